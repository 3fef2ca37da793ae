// cublas.cpp: the emulator's libcublas.so, the cuBLAS calls flextrain makes (gpu/blas_gpu.go), carried out
// on the host on the emulated stream, with the layouts cuBLAS documents: column-major matrices, op(A) and
// op(B) by their transposition flags, leading dimensions checked as cuBLAS checks them, and each matrix's
// extent checked against its allocation. Under CUBLAS_TF32_TENSOR_OP_MATH the float32 product rounds its
// inputs to TF32 (10 fraction bits), the most a GPU may round them; bfloat16 inputs are widened exactly.
// Sums are float32, in the order of k. FLEXTRAIN_EMU_TF32=0 keeps the float32 operands under TF32 math too,
// to tell TF32's effect on a result from the rest.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "emulator.h"

namespace {

enum Status { kSuccess = 0, kInvalidValue = 7, kNotSupported = 15 };
enum { kOpN = 0, kOpT = 1, kOpC = 2 };
enum { kR32F = 0, kR16BF = 14 };       // cudaDataType
enum { kCompute32F = 68 };             // cublasComputeType_t
enum { kDefaultMath = 0, kTF32Math = 3 }; // cublasMath_t, without its flag bits

struct Handle {
	int math = kDefaultMath;
};

bool keepFloat32() {
	const char *s = std::getenv("FLEXTRAIN_EMU_TF32");
	return s != nullptr && std::strcmp(s, "0") == 0;
}

float widen(uint16_t b) {
	uint32_t u = uint32_t(b) << 16;
	float f;
	std::memcpy(&f, &u, 4);
	return f;
}

float tf32(float x) {
	uint32_t u;
	std::memcpy(&u, &x, 4);
	if ((u & 0x7f800000) != 0x7f800000) { // finite: round to nearest even at 10 fraction bits
		u += 0xfff + ((u >> 13) & 1);
		u &= 0xffffe000;
	}
	std::memcpy(&x, &u, 4);
	return x;
}

// Matrix is one operand as cuBLAS reads it: column-major with leading dimension ld, transposed or not, of
// float32 or bfloat16 values, a batch's matrices stride values apart.
struct Matrix {
	uint64_t p;
	int ld, type;
	bool t;
	long long stride;

	size_t size() const { return type == kR16BF ? 2 : 4; }

	// at is element (i, j) of op(M) in batch b.
	float at(long long b, long long i, long long j) const {
		long long off = b * stride + (t ? j + i * ld : i + j * ld);
		if (type == kR16BF) return widen(((const uint16_t *)p)[off]);
		return ((const float *)p)[off];
	}

	// fits is whether the batch's matrices of op(M) [rows, cols] lie within one allocation.
	bool fits(int rows, int cols, int batch) const {
		if (rows == 0 || cols == 0 || batch == 0) return true;
		long long r = t ? cols : rows, c = t ? rows : cols;
		long long last = (long long)(batch - 1) * stride + (c - 1) * ld + r;
		return stride >= 0 && emu_inside(p, size_t(last) * size());
	}
};

bool badOp(int op) { return op != kOpN && op != kOpT && op != kOpC; }

// gemm checks C = alpha·op(A)·op(B) + beta·C over a batch as cuBLAS does and queues it on the stream.
int gemm(Handle *h, const char *call, int ta, int tb, int m, int n, int k, float alpha, Matrix a, Matrix b, float beta,
	Matrix c, int batch) {
	if (h == nullptr) return 1; // CUBLAS_STATUS_NOT_INITIALIZED
	if (badOp(ta) || badOp(tb) || m < 0 || n < 0 || k < 0 || batch < 0) return kInvalidValue;
	if (a.ld < (ta == kOpN ? m : k) || a.ld < 1 || b.ld < (tb == kOpN ? k : n) || b.ld < 1 || c.ld < m || c.ld < 1) {
		return kInvalidValue;
	}
	if (!a.fits(m, k, batch) || !b.fits(k, n, batch) || !c.fits(m, n, batch)) {
		emu_fail("%s: m %d, n %d, k %d, lda %d, ldb %d, ldc %d, batch %d: a matrix reaches outside its allocation", call,
			m, n, k, a.ld, b.ld, c.ld, batch);
		return kSuccess; // cuBLAS does not check; the GPU faults when the product runs
	}
	bool round = a.type == kR32F && (h->math & 0xf) == kTF32Math && !keepFloat32();
	emu_enqueue([=] {
		// op(A) and op(B) unpacked as float32 (rounded to TF32 where asked), op(A) column by column, so
		// that the inner loop runs along contiguous memory; each sum still adds its k terms in order.
		std::vector<float> pa(size_t(m) * k), pb(size_t(k) * n), acc(m);
		float *out = (float *)c.p;
		for (long long z = 0; z < batch; z++) {
			for (long long l = 0; l < k; l++) {
				for (long long i = 0; i < m; i++) pa[l * m + i] = round ? tf32(a.at(z, i, l)) : a.at(z, i, l);
			}
			for (long long j = 0; j < n; j++) {
				for (long long l = 0; l < k; l++) pb[j * k + l] = round ? tf32(b.at(z, l, j)) : b.at(z, l, j);
			}
			for (long long j = 0; j < n; j++) {
				std::fill(acc.begin(), acc.end(), 0.0f);
				for (long long l = 0; l < k; l++) {
					const float y = pb[j * k + l], *x = &pa[l * m];
					for (long long i = 0; i < m; i++) acc[i] += x[i] * y;
				}
				float *dst = out + z * c.stride + j * c.ld;
				for (long long i = 0; i < m; i++) dst[i] = beta == 0 ? alpha * acc[i] : alpha * acc[i] + beta * dst[i];
			}
		}
		emu_guard(c.p, call);
	});
	return kSuccess;
}

} // namespace

extern "C" {

int cublasCreate_v2(void **handle) {
	*handle = new Handle;
	return kSuccess;
}

int cublasDestroy_v2(void *handle) {
	delete (Handle *)handle;
	return kSuccess;
}

int cublasSetStream_v2(void *handle, void *) { return handle ? kSuccess : 1; }

int cublasSetMathMode(void *handle, int mode) {
	if (handle == nullptr) return 1;
	if ((mode & 0xf) > kTF32Math) return kInvalidValue;
	((Handle *)handle)->math = mode;
	return kSuccess;
}

int cublasSgemmStridedBatched(void *handle, int ta, int tb, int m, int n, int k, const float *alpha, const float *a,
	int lda, long long sa, const float *b, int ldb, long long sb, const float *beta, float *c, int ldc, long long sc,
	int batch) {
	return gemm((Handle *)handle, "cublasSgemmStridedBatched", ta, tb, m, n, k, *alpha,
		Matrix{(uint64_t)a, lda, kR32F, ta != kOpN, sa}, Matrix{(uint64_t)b, ldb, kR32F, tb != kOpN, sb}, *beta,
		Matrix{(uint64_t)c, ldc, kR32F, false, sc}, batch);
}

int cublasGemmEx(void *handle, int ta, int tb, int m, int n, int k, const void *alpha, const void *a, int atype, int lda,
	const void *b, int btype, int ldb, const void *beta, void *c, int ctype, int ldc, int compute, int algo) {
	bool types = atype == btype && (atype == kR16BF || atype == kR32F) && ctype == kR32F && compute == kCompute32F;
	if (!types || (algo != -1 && algo != 99)) return kNotSupported;
	return gemm((Handle *)handle, "cublasGemmEx", ta, tb, m, n, k, *(const float *)alpha,
		Matrix{(uint64_t)a, lda, atype, ta != kOpN, 0}, Matrix{(uint64_t)b, ldb, btype, tb != kOpN, 0},
		*(const float *)beta, Matrix{(uint64_t)c, ldc, kR32F, false, 0}, 1);
}

} // extern "C"
