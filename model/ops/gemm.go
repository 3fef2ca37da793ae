package ops

import "github.com/flextrain/flextrain/model/gemm"

// matmul computes C = alpha·op(A)·op(B) + beta·C for row-major A (m×k after op), B (k×n after op), C (m×n).
func matmul[T Float](tA, tB bool, m, n, k int, alpha T, a []T, b []T, beta T, c []T) {
	if m == 0 || n == 0 {
		return
	}
	lda, ldb := k, n
	if tA {
		lda = m
	}
	if tB {
		ldb = k
	}
	switch a := any(a).(type) {
	case []float32:
		gemm32(tA, tB, m, n, k, float32(alpha), a, max(lda, 1), any(b).([]float32), max(ldb, 1), float32(beta), any(c).([]float32), max(n, 1))
	case []float64:
		gemm.Dgemm(tA, tB, m, n, k, float64(alpha), a, max(lda, 1), any(b).([]float64), max(ldb, 1), float64(beta), any(c).([]float64), max(n, 1))
	}
}

var gemm32 = gemm.Sgemm

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
