// shim.h: what CUDA C gives a kernel, on the host, so that gpu/kernels/kernels.cu compiles as C++ into the
// emulator (the build includes this file first). A block's threads run as fibers of one host thread
// (driver.cpp, one kernel at a time): a __shared__ array is one static array that they all see, and __syncthreads() hands the
// fiber back to the block's scheduler until every thread of the block has reached it.
#pragma once
#include <cmath>
#include <cstring>
#include <type_traits>

struct uint3 {
	unsigned x, y, z;
};
typedef uint3 dim3;

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

void __syncthreads();

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static

static inline float __uint_as_float(unsigned u) {
	float f;
	std::memcpy(&f, &u, 4);
	return f;
}

static inline unsigned __float_as_uint(float f) {
	unsigned u;
	std::memcpy(&u, &f, 4);
	return u;
}

// CUDA's min and max take any two arithmetic values.
template <class A, class B> static inline typename std::common_type<A, B>::type min(A a, B b) { return b < a ? b : a; }
template <class A, class B> static inline typename std::common_type<A, B>::type max(A a, B b) { return a < b ? b : a; }

using std::erf;
using std::exp;
using std::fmax;
using std::log;
using std::sqrt;
