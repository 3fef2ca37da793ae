// Package gemm multiplies dense row-major matrices: C = alpha·op(A)·op(B) + beta·C.
//
// It is the matrix multiply of the default (pure Go, no cgo) build. The work is cache
// blocked in the GotoBLAS way: panels of op(B) and op(A) are packed into contiguous buffers
// (taken from a sync.Pool, so steady-state calls do not allocate) and a register-blocked
// micro-kernel computes one small tile of C at a time. On amd64 the micro-kernels are Go
// assembly (AVX-512 when the CPU has it, else AVX2+FMA, chosen once at start-up with
// golang.org/x/sys/cpu); other architectures, and amd64 builds with the purego tag, use a
// portable Go kernel, which is correct but slow (about 5 GFLOP/s). The assembly is generated
// by asmgen.go (go generate).
//
// On the two-vCPU AMD EPYC development machine the AVX-512 float32 path runs the bench
// model's multiplies at 150–190 GFLOP/s on one core, about ten times gonum's Sgemm. A multiply
// of at least 2²² multiply-adds is split by rows of C over up to GOMAXPROCS goroutines (two
// such multiplies side by side each kept ~90% of their speed there, so the cores do not share
// an FPU), which brings those shapes to 265–305 GFLOP/s. A product of too few rows to split that way (a
// decoding step's one row against a weight matrix) is split by columns of C instead.
//
// Results are deterministic: every element of C is summed in an order fixed by the shape
// alone, and row and column bands start on tile boundaries, so the same inputs give bitwise the same
// outputs on the same kernel, whatever GOMAXPROCS is. Different kernels (AVX-512, AVX2, Go)
// may differ in the last bits.
//
// SgemmHalf takes B as float16 or bfloat16 values and widens them as it packs them: frozen weights published
// in 16 bits are multiplied without a float32 copy, with Sgemm's bits on the widened B. SgemmBF16 and
// SgemmHalfBF16 round the operands to bfloat16 as they pack them (mixed precision's products), with
// Sgemm's bits on rounded copies.
//
// Example: y = x·wᵀ for x [rows, in] and a torch-layout weight w [out, in]:
//
//	gemm.Sgemm(false, true, rows, out, in, 1, x, in, w, in, 0, y, out)
package gemm

import "fmt"

// Sgemm computes C = alpha·op(A)·op(B) + beta·C in float32, where op(X) = Xᵀ when the
// matching flag is set. op(A) is m×k, op(B) is k×n and C is m×n; all three are row-major
// with leading dimensions (row strides) lda, ldb and ldc. When beta is zero C is not read,
// so it may hold NaNs. Like BLAS it panics on inconsistent sizes (a programming error).
func Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mustCheck(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	run(sKernel, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmBF16 is Sgemm over A and B rounded to bfloat16 (to nearest, ties to even) as their panels are packed,
// the products summed in float32: mixed precision's products (ops.BF16), bitwise Sgemm over rounded copies
// of A and B, without the copies.
func SgemmBF16(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	mustCheck(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	runB(sKernel, tA, m, n, k, alpha, a, lda, matB[float32]{t: tB, b: b, ld: ldb, round: true}, beta, c, ldc)
}

// Dgemm is Sgemm in float64.
func Dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	mustCheck(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	run(dKernel, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Check reports whether the arguments describe matrices that fit their slices; Sgemm and
// Dgemm panic with the same message. Callers that build shapes from untrusted input can call
// it first to turn the panic into an error.
func Check(tA, tB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) error {
	if m < 0 || n < 0 || k < 0 {
		return fmt.Errorf("gemm: negative size m=%d n=%d k=%d", m, n, k)
	}
	ar, ac := rowsCols(tA, m, k)
	br, bc := rowsCols(tB, k, n)
	if err := checkMatrix("A", ar, ac, lenA, lda); err != nil {
		return err
	}
	if err := checkMatrix("B", br, bc, lenB, ldb); err != nil {
		return err
	}
	return checkMatrix("C", m, n, lenC, ldc)
}

// rowsCols gives the stored shape of a matrix whose op is r×c.
func rowsCols(t bool, r, c int) (int, int) {
	if t {
		return c, r
	}
	return r, c
}

// checkMatrix checks one stored rows×cols matrix with row stride ld against its slice length.
func checkMatrix(name string, rows, cols, n, ld int) error {
	if ld < max(cols, 1) {
		return fmt.Errorf("gemm: %s: leading dimension %d < %d", name, ld, max(cols, 1))
	}
	if rows > 0 && cols > 0 && n < (rows-1)*ld+cols {
		return fmt.Errorf("gemm: %s: slice of %d elements is too short for %d×%d with stride %d", name, n, rows, cols, ld)
	}
	return nil
}

func mustCheck(tA, tB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) {
	if err := Check(tA, tB, m, n, k, lenA, lda, lenB, ldb, lenC, ldc); err != nil {
		panic(err.Error())
	}
}
