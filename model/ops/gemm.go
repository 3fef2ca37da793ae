package ops

import "github.com/flextrain/flextrain/model/gemm"

// matmul computes C = alpha·op(A)·op(B) + beta·C for row-major A (m×k after op), B (k×n after op), C (m×n).
func matmul[T Float](tA, tB bool, m, n, k int, alpha T, a []T, b []T, beta T, c []T) {
	if m == 0 || n == 0 {
		return
	}
	lda, ldb := leading(tA, tB, m, n, k)
	switch a := any(a).(type) {
	case []float32:
		gemm32(tA, tB, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), max(n, 1))
	case []float64:
		gemm.Dgemm(tA, tB, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), max(n, 1))
	}
}

var gemm32 = gemm.Sgemm

// matmulIn is matmul in precision p: with BF16 (float32 only) gemm rounds both operands to bfloat16 as it
// packs them (gemm.SgemmBF16), the numbers of the plain product over rounded copies.
func matmulIn[T Float](p Precision, tA, tB bool, m, n, k int, alpha T, a, b []T, beta T, c []T) {
	a32, ok := any(a).([]float32)
	if p != BF16 || !ok || m == 0 || n == 0 {
		matmul(tA, tB, m, n, k, alpha, a, b, beta, c)
		return
	}
	lda, ldb := leading(tA, tB, m, n, k)
	gemm.SgemmBF16(tA, tB, m, n, k, float32(alpha), a32, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), max(n, 1))
}

// leading are the row strides (at least 1) of op(A), m×k, and op(B), k×n, stored densely.
func leading(tA, tB bool, m, n, k int) (lda, ldb int) {
	lda, ldb = k, n
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	return max(lda, 1), max(ldb, 1)
}

// matmulLD is matmul with explicit leading dimensions, for strided views such as one head of [rows, H·dh].
func matmulLD[T Float](tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	switch a := any(a).(type) {
	case []float32:
		gemm.Sgemm(tA, tB, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(c).([]float32), ldc)
	case []float64:
		gemm.Dgemm(tA, tB, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(c).([]float64), ldc)
	}
}

// MatMulNT sets y = x·wᵀ for x [rows, in] and w [out, in] (the layout of a torch Linear weight).
func MatMulNT[T Float](y, x, w []T, rows, in, out int) {
	matmul(false, true, rows, out, in, 1, x, w, 0, y)
}

// MatMulNTIn is MatMulNT in precision p.
func MatMulNTIn[T Float](p Precision, y, x, w []T, rows, in, out int) {
	matmulIn(p, false, true, rows, out, in, 1, x, w, 0, y)
}
