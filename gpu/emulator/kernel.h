// kernel.h: flextrain's kernels as the emulator's driver sees them (kernels.cpp builds the table).
#pragma once
#include <cstdint>

// Kernel is one kernel of gpu/kernels/kernels.cu compiled for the host: its parameters (each 8 bytes, as
// flextrain passes them), which of them are pointers, and a call that unpacks cuLaunchKernel's values.
struct Kernel {
	const char *name;
	int arity;
	uint64_t pointers; // bit i: parameter i is a pointer
	void (*call)(const uint64_t *args);
};

// emu_kernel is the kernel of that name, or nullptr.
const Kernel *emu_kernel(const char *name);
