// The emulator's stand-in for CUDA's cuda_fp16.h: the two conversions flextrain's kernels use, on the host.
#pragma once
#include <cstring>
#include <cmath>

struct __half {
	unsigned short x;
};

static inline __half __ushort_as_half(unsigned short h) { return __half{h}; }

// __half2float widens IEEE binary16 to float32 exactly: zeros, subnormals, infinities and NaNs included.
static inline float __half2float(__half h) {
	unsigned sign = (h.x >> 15) & 1, exp = (h.x >> 10) & 0x1f, frac = h.x & 0x3ff;
	float v;
	if (exp == 0) {
		v = std::ldexp((float)frac, -24);
	} else if (exp == 31) {
		v = frac ? NAN : INFINITY;
	} else {
		v = std::ldexp((float)(frac | 0x400), (int)exp - 25);
	}
	return sign ? -v : v;
}
