// kernels.cpp: gpu/kernels/kernels.cu compiled for the host (shim.h gives it CUDA C's names), and the
// table of its kernels that the emulator's driver launches. The build lists the kernels in kernels.inc.
#include "../kernels/kernels.cu"

#include <cstring>
#include <type_traits>
#include <utility>

#include "kernel.h"

namespace {

template <class T> T load(uint64_t v) {
	static_assert(sizeof(T) == 8, "every kernel parameter is 8 bytes");
	T t;
	std::memcpy(&t, &v, 8);
	return t;
}

template <class... A, std::size_t... I> void invoke(void (*f)(A...), const uint64_t *a, std::index_sequence<I...>) {
	f(load<A>(a[I])...);
}

template <class... A> constexpr int arity(void (*)(A...)) { return sizeof...(A); }

template <class... A, std::size_t... I> constexpr uint64_t pointers(std::index_sequence<I...>) {
	return ((std::is_pointer<A>::value ? uint64_t(1) << I : 0) | ... | 0);
}

template <class... A> constexpr uint64_t pointers(void (*)(A...)) { return pointers<A...>(std::index_sequence_for<A...>{}); }

template <class... A> void call(void (*f)(A...), const uint64_t *a) { invoke(f, a, std::index_sequence_for<A...>{}); }

template <auto F> void trampoline(const uint64_t *a) { call(F, a); }

#define K(name) Kernel{#name, arity(name), pointers(name), &trampoline<name>},
const Kernel table[] = {
#include "kernels.inc"
};
#undef K

} // namespace

const Kernel *emu_kernel(const char *name) {
	for (const Kernel &k : table) {
		if (std::strcmp(k.name, name) == 0) return &k;
	}
	return nullptr;
}
