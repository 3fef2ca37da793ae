// The row kernels of softmax attention: a row's softmax (max-subtracted, summed in float64), its backward,
// and the reductions under them. Plain attention, both FlexAttention forms, its reference row (AttendRow),
// the selection and the frozen tower's FullAttention share them, so that a row's numbers are computed the
// same way wherever it is computed.

package ops

import "math"

// softmax normalises x in place (max-subtracted, accumulated in float64).
func softmax[T Float](x []T) { softmaxSum(x) }

// softmaxSum normalises x in place and returns its largest value m and Σ e^(x−m), of which the log-sum-exp
// of x is m + log Σ.
func softmaxSum[T Float](x []T) (T, float64) {
	if len(x) == 0 {
		return T(math.Inf(-1)), 0
	}
	m := maxOf(x)
	expShifted(x, m)
	s := sum64(x)
	inv := T(1 / s)
	for i := range x {
		x[i] *= inv
	}
	return m, s
}

// softmaxBackward turns dp = ∂L/∂P into ∂L/∂s in place: ds_j = P_j·(dp_j − Σ_i P_i·dp_i − shift), where
// shift carries what another softmax sharing the scores s adds.
func softmaxBackward[T Float](p, dp []T, shift float64) {
	rho := T(shift + dot64(p, dp))
	dp = dp[:len(p)]
	for i, pi := range p {
		dp[i] = pi * (dp[i] - rho)
	}
}

// maxOf is the largest element of a non-empty x, four running maxima at a time: max is exact, so the
// order does not change the result, and the four chains overlap.
func maxOf[T Float](x []T) T {
	m0, m1, m2, m3 := x[0], x[0], x[0], x[0]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		m0, m1, m2, m3 = max(m0, x[i]), max(m1, x[i+1]), max(m2, x[i+2]), max(m3, x[i+3])
	}
	for ; i < len(x); i++ {
		m0 = max(m0, x[i])
	}
	return max(max(m0, m1), max(m2, m3))
}

// sum64 is Σ x in float64, as four interleaved partial sums (independent chains of adds, which overlap)
// added pairwise at the end.
func sum64[T Float](x []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0, s1, s2, s3 = s0+float64(x[i]), s1+float64(x[i+1]), s2+float64(x[i+2]), s3+float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dot64 is Σ a·b in float64, four partial sums like sum64.
func dot64[T Float](a, b []T) float64 {
	var s0, s1, s2, s3 float64
	b = b[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
		s2 += float64(a[i+2]) * float64(b[i+2])
		s3 += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dot is Σ a·b accumulated in T, in order, returned as float64.
func dot[T Float](a, b []T) float64 {
	var s T
	for i := range a {
		s += a[i] * b[i]
	}
	return float64(s)
}

// axpy sets y += a·x.
func axpy[T Float](y []T, a T, x []T) {
	for i := range y {
		y[i] += a * x[i]
	}
}
