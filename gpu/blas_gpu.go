//go:build gpu

package gpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// The few cuBLAS entry points flextrain calls, by address: the library is opened at run time, so that one
// binary works with the CUDA of the machine it runs on (cuBLAS 11, 12 or 13 keep these signatures).
typedef int (*create_fn)(void **handle);
typedef int (*destroy_fn)(void *handle);
typedef int (*set_stream_fn)(void *handle, void *stream);
typedef int (*set_math_fn)(void *handle, int mode);
typedef int (*sgemm_strided_fn)(void *handle, int ta, int tb, int m, int n, int k, const float *alpha,
	const void *a, int lda, long long sa, const void *b, int ldb, long long sb, const float *beta,
	void *c, int ldc, long long sc, int batch);
typedef int (*gemm_ex_fn)(void *handle, int ta, int tb, int m, int n, int k, const void *alpha, const void *a,
	int atype, int lda, const void *b, int btype, int ldb, const void *beta, void *c, int ctype, int ldc,
	int compute, int algo);

typedef struct {
	void *lib, *handle;
	create_fn create;
	destroy_fn destroy;
	set_stream_fn set_stream;
	set_math_fn set_math;
	sgemm_strided_fn sgemm_strided;
	gemm_ex_fn gemm_ex;
} blas_lib;

static void *blas_open(const char *name) { return dlopen(name, RTLD_NOW | RTLD_LOCAL); }

// blas_bind looks up every entry point of lib->lib; it returns the name of the first one missing, or NULL.
static const char *blas_bind(blas_lib *l) {
	if (!(l->create = (create_fn)dlsym(l->lib, "cublasCreate_v2"))) return "cublasCreate_v2";
	if (!(l->destroy = (destroy_fn)dlsym(l->lib, "cublasDestroy_v2"))) return "cublasDestroy_v2";
	if (!(l->set_stream = (set_stream_fn)dlsym(l->lib, "cublasSetStream_v2"))) return "cublasSetStream_v2";
	if (!(l->set_math = (set_math_fn)dlsym(l->lib, "cublasSetMathMode"))) return "cublasSetMathMode";
	if (!(l->sgemm_strided = (sgemm_strided_fn)dlsym(l->lib, "cublasSgemmStridedBatched"))) return "cublasSgemmStridedBatched";
	if (!(l->gemm_ex = (gemm_ex_fn)dlsym(l->lib, "cublasGemmEx"))) return "cublasGemmEx";
	return NULL;
}

static int blas_create(blas_lib *l) { return l->create(&l->handle); }
static int blas_destroy(blas_lib *l) { return l->destroy(l->handle); }
static int blas_set_stream(blas_lib *l, void *stream) { return l->set_stream(l->handle, stream); }
static int blas_set_math(blas_lib *l, int mode) { return l->set_math(l->handle, mode); }
// a, b and c are device addresses (CUdeviceptr), not host pointers.
static int blas_sgemm_strided(blas_lib *l, int ta, int tb, int m, int n, int k, float alpha, unsigned long long a,
	int lda, long long sa, unsigned long long b, int ldb, long long sb, float beta, unsigned long long c, int ldc,
	long long sc, int batch) {
	return l->sgemm_strided(l->handle, ta, tb, m, n, k, &alpha, (const void *)a, lda, sa, (const void *)b, ldb, sb,
		&beta, (void *)c, ldc, sc, batch);
}
// C = A·B + beta·C with A and B bfloat16 (CUDA_R_16BF), C float32 (CUDA_R_32F), summed in float32
// (CUBLAS_COMPUTE_32F) by the algorithm cuBLAS picks (CUBLAS_GEMM_DEFAULT).
static int blas_gemm_bf16(blas_lib *l, int ta, int tb, int m, int n, int k, unsigned long long a, int lda,
	unsigned long long b, int ldb, float beta, unsigned long long c, int ldc) {
	const float alpha = 1;
	return l->gemm_ex(l->handle, ta, tb, m, n, k, &alpha, (const void *)a, 14, lda, (const void *)b, 14, ldb,
		&beta, (void *)c, 0, ldc, 68, -1);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"

	"github.com/flextrain/flextrain/model/ops"
)

// blasLibraries are the cuBLAS sonames tried, newest first.
var blasLibraries = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// cuBLAS's constants (cublas_api.h).
const (
	blasOpN         = 0 // CUBLAS_OP_N
	blasOpT         = 1 // CUBLAS_OP_T
	blasDefaultMath = 0 // CUBLAS_DEFAULT_MATH: float32 products in float32
	blasTF32Math    = 3 // CUBLAS_TF32_TENSOR_OP_MATH
)

// blas is one cuBLAS handle bound to the device's stream. Its calls run on the device's thread.
type blas struct {
	l          *C.blas_lib
	tf32, mode bool // the device's float32 products in TF32 (the tf32 key); the handle's mode now
}

// newBLAS opens the first cuBLAS of blasLibraries that loads, or names every one tried and why.
func newBLAS(stream unsafe.Pointer, tf32 bool) (*blas, error) {
	l := (*C.blas_lib)(C.calloc(1, C.sizeof_blas_lib))
	var tried []string
	for _, name := range blasLibraries {
		cname := C.CString(name)
		l.lib = C.blas_open(cname)
		C.free(unsafe.Pointer(cname))
		if l.lib != nil {
			break
		}
		tried = append(tried, fmt.Sprintf("%s (%s)", name, C.GoString(C.dlerror())))
	}
	if l.lib == nil {
		C.free(unsafe.Pointer(l))
		return nil, fmt.Errorf("gpu: no cuBLAS could be loaded; tried %s (set LD_LIBRARY_PATH to the folder that holds it)", strings.Join(tried, ", "))
	}
	if missing := C.blas_bind(l); missing != nil {
		return nil, fmt.Errorf("gpu: cuBLAS lacks %s", C.GoString(missing))
	}
	b := &blas{l: l, tf32: tf32, mode: !tf32} // the mode set below, whichever it is
	if err := b.check("cublasCreate", C.blas_create(l)); err != nil {
		return nil, err
	}
	if err := b.check("cublasSetStream", C.blas_set_stream(l, stream)); err != nil {
		return nil, err
	}
	return b, b.math(tf32)
}

// math sets the handle's float32 products to TF32 on the tensor cores, or to float32, unless it is so.
func (b *blas) math(tf32 bool) error {
	if b.mode == tf32 {
		return nil
	}
	mode := blasDefaultMath
	if tf32 {
		mode = blasTF32Math
	}
	if err := b.check("cublasSetMathMode", C.blas_set_math(b.l, C.int(mode))); err != nil {
		return err
	}
	b.mode = tf32
	return nil
}

// check turns a cuBLAS status into an error naming the call.
func (b *blas) check(call string, status C.int) error {
	if status != 0 {
		return fmt.Errorf("gpu: %s: cuBLAS status %d", call, int(status))
	}
	return nil
}

func (b *blas) close() { C.blas_destroy(b.l) }

// MatMulNT sets y = x·wᵀ for row-major x [rows, in] and w [out, in] (a torch Linear's weight).
func (d *Device) MatMulNT(y, x, w Buffer, rows, in, out int) error {
	if x.n != rows*in || w.n != out*in || y.n != rows*out {
		return fmt.Errorf("gpu: MatMulNT: x %d, w %d, y %d values for [%d, %d]·[%d, %d]ᵀ", x.n, w.n, y.n, rows, in, out, in)
	}
	return d.gemm(mat{b: x, ld: in}, mat{b: w, ld: in, t: true}, mat{b: y, ld: out}, rows, out, in, 1, 0, 1)
}

// mat is a row-major matrix operand: the buffer and the offset of its first value, its row stride, whether
// it enters transposed, and the offset between the matrices of a batch.
type mat struct {
	b          Buffer
	off, ld    int
	t          bool
	batchShift int
}

// gemmBF16 computes C = op(A)·op(B) + beta·C for row-major A and B of bfloat16 values (their bits, each
// matrix from the start of its buffer) and float32 C, the products summed in float32: cublasGemmEx with
// compute type 32F, on the tensor cores. As gemm, it computes Cᵀ = op(B)ᵀ·op(A)ᵀ, and queues the call
// (post).
func (d *Device) gemmBF16(a, b, c mat, m, n, k int, beta float32) error {
	if a.off != 0 || b.off != 0 || a.batchShift != 0 || b.batchShift != 0 {
		return errors.New("gpu: a bfloat16 product reads whole matrices")
	}
	d.post(func() error {
		d.usage.FLOPsBF16 += 2 * int64(m) * int64(n) * int64(k)
		return d.blas.check("cublasGemmEx", C.blas_gemm_bf16(d.blas.l, blasOp(b.t), blasOp(a.t), C.int(n), C.int(m),
			C.int(k), C.ulonglong(b.b.ptr), C.int(b.ld), C.ulonglong(a.b.ptr), C.int(a.ld), C.float(beta),
			C.ulonglong(c.b.at(c.off)), C.int(c.ld)))
	})
	return nil
}

// blasOp is cuBLAS's operation for an operand transposed when t.
func blasOp(t bool) C.int {
	if t {
		return blasOpT
	}
	return blasOpN
}

// gemm computes batch products C = alpha·op(A)·op(B) + beta·C of row-major matrices, op(A) m×k and op(B)
// k×n, in float32 (TF32 when the device was opened with tf32). cuBLAS is column-major, and a row-major
// matrix read column-major is its transpose, so it computes Cᵀ = op(B)ᵀ·op(A)ᵀ: B's operand first. The
// call is queued (post): cuBLAS's error, if any, is reported by the next call that waits.
func (d *Device) gemm(a, b, c mat, m, n, k int, alpha, beta float32, batch int) error {
	return d.gemmIn(ops.Native, a, b, c, m, n, k, alpha, beta, batch)
}

// gemmIn is gemm for products of the given precision: with ops.BF16 (mixed precision) the float32
// operands go to the tensor cores in TF32 (rounded to a 10-bit mantissa, float32 sums), finer than the
// bfloat16 they could be rounded to; the attention's products, whose operands are computed values that no
// bfloat16 copy holds, run so.
func (d *Device) gemmIn(p ops.Precision, a, b, c mat, m, n, k int, alpha, beta float32, batch int) error {
	d.post(func() error {
		tf32 := d.blas.tf32 || p == ops.BF16
		if err := d.blas.math(tf32); err != nil {
			return err
		}
		flops := 2 * int64(m) * int64(n) * int64(k) * int64(batch)
		if tf32 {
			d.usage.FLOPsTF32 += flops
		} else {
			d.usage.FLOPsFloat32 += flops
		}
		return d.blas.check("cublasSgemmStridedBatched", C.blas_sgemm_strided(d.blas.l, blasOp(b.t), blasOp(a.t),
			C.int(n), C.int(m), C.int(k), C.float(alpha), C.ulonglong(b.b.at(b.off)), C.int(b.ld), C.longlong(b.batchShift),
			C.ulonglong(a.b.at(a.off)), C.int(a.ld), C.longlong(a.batchShift), C.float(beta), C.ulonglong(c.b.at(c.off)),
			C.int(c.ld), C.longlong(c.batchShift), C.int(batch)))
	})
	return nil
}
