package ops

import "math"

// FullAttention is non-causal multi-head attention without gradient (the frozen vision tower): for q, k, v
// [T, H·dh] it sets o [T, H·dh] to softmax(q kᵀ/√dh)·v per head. Its scratch comes from m.
func FullAttention[T Float](m *Arena, o, q, k, v []T, tokens, heads, dh int) {
	width := heads * dh
	s := Scratch[T](m, tokens*tokens)
	defer Recycle(m, s)
	for h := 0; h < heads; h++ {
		matmulLD(false, true, tokens, tokens, dh, T(1/math.Sqrt(float64(dh))), q[h*dh:], width, k[h*dh:], width, 0, s, tokens)
		for r := 0; r < tokens; r++ {
			softmax(s[r*tokens : (r+1)*tokens])
		}
		matmulLD(false, false, tokens, dh, tokens, 1, s, tokens, v[h*dh:], width, 0, o[h*dh:], width)
	}
}

// AddRowBias adds b [C] to every row of x [R, C].
func AddRowBias[T Float](x, b []T) {
	for lo := 0; lo < len(x); lo += len(b) {
		AddTo(x[lo:min(lo+len(b), len(x))], b)
	}
}

// QuickGELU applies z·σ(1.702·z) in place (CLIP's activation), on all cores, a stack buffer of σ at a time.
func QuickGELU[T Float](x []T) {
	parallelRange(len(x), grain, func(lo, hi int) {
		var buf [256]T
		for ; lo < hi; lo += len(buf) {
			c := x[lo:min(lo+len(buf), hi)]
			sigmoids(buf[:], c, 1.702)
			mulBy(c, buf[:])
		}
	})
}

// GELUInPlace applies the exact (erf) GELU in place, on all cores.
func GELUInPlace[T Float](x []T) { mapInto(x, x, gelu) }

// RMSNormRows applies y = x / sqrt(mean(x²) + eps) · w to every row of x [R, len(w)].
func RMSNormRows[T Float](y, x, w []T, eps float64) {
	D := len(w)
	for r := 0; r < len(x)/D; r++ {
		xr, yr := x[r*D:(r+1)*D], y[r*D:(r+1)*D]
		s := T(rms(xr, eps))
		for i := range xr {
			yr[i] = xr[i] * s * w[i]
		}
	}
}

// SwiGLUInPlace sets gate = silu(gate) ⊙ up.
func SwiGLUInPlace[T Float](gate, up []T) {
	for i, g := range gate {
		gate[i] = g * sigm(g) * up[i]
	}
}
