package ops

import "math"

// FullAttention is non-causal multi-head attention without gradient (the frozen vision tower): for q, k, v
// [T, H·dh] it sets o [T, H·dh] to softmax(q kᵀ/√dh)·v per head.
func FullAttention[T Float](o, q, k, v []T, tokens, heads, dh int) {
	width := heads * dh
	scale := 1 / math.Sqrt(float64(dh))
	row := make([]T, tokens)
	clear(o)
	for h := 0; h < heads; h++ {
		for r := 0; r < tokens; r++ {
			qr := q[r*width+h*dh:][:dh]
			for j := range row {
				row[j] = T(scale * dot(qr, k[j*width+h*dh:][:dh]))
			}
			softmax(row)
			or := o[r*width+h*dh:][:dh]
			for j := range row {
				axpy(or, row[j], v[j*width+h*dh:][:dh])
			}
		}
	}
}

// AddRowBias adds b [C] to every row of x [R, C].
func AddRowBias[T Float](x, b []T) {
	for i := range x {
		x[i] += b[i%len(b)]
	}
}

// QuickGELU applies z·σ(1.702·z) in place (CLIP's activation).
func QuickGELU[T Float](x []T) {
	for i, v := range x {
		x[i] = T(float64(v) * sigmoid(1.702*float64(v)))
	}
}

// GELUInPlace applies the exact (erf) GELU in place.
func GELUInPlace[T Float](x []T) {
	for i, v := range x {
		x[i] = T(gelu(float64(v)))
	}
}
