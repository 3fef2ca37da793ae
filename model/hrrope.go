package model

import (
	"math"

	"github.com/flextrain/flextrain/model/ops"
)

// hrRopeTables returns the RoPE cos and sin tables of the HR keys of an image whose LR span starts at row i0
// (DESIGN.md §7): the LR image rows of the decoder's tables, [g, g, dh], resized per channel to [Zg, Zg] with
// PyTorch's bicubic (align_corners=False, A = −0.75), flattened to [Zg·Zg, dh]. Not re-normalised.
func hrRopeTables(m *ops.Arena, cos, sin []float64, i0, g, zg, dh int) (hcos, hsin []float64) {
	return resizeSpan(m, cos, i0, g, zg, dh), resizeSpan(m, sin, i0, g, zg, dh)
}

func resizeSpan(m *ops.Arena, t []float64, i0, g, zg, dh int) []float64 {
	out := ops.Buffer[float64](m, zg*zg*dh)
	src, rows, dst := ops.Scratch[float64](m, g*g), ops.Scratch[float64](m, g*zg), ops.Scratch[float64](m, zg*zg)
	for c := 0; c < dh; c++ {
		for i := range src {
			src[i] = t[(i0+i)*dh+c]
		}
		bicubic2D(dst, rows, src, g, zg)
		for i, v := range dst {
			out[i*dh+c] = v
		}
	}
	ops.Recycle(m, src, rows, dst)
	return out
}

// bicubic2D resizes a [g, g] map x to [zg, zg] in out, first along columns (into rows, [g, zg]) then along
// rows.
func bicubic2D(out, rows, x []float64, g, zg int) {
	for i := 0; i < g; i++ {
		for j := 0; j < zg; j++ {
			rows[i*zg+j] = cubicAt(func(k int) float64 { return x[i*g+k] }, j, g, zg)
		}
	}
	for i := 0; i < zg; i++ {
		for j := 0; j < zg; j++ {
			out[i*zg+j] = cubicAt(func(k int) float64 { return rows[k*zg+j] }, i, g, zg)
		}
	}
}

// cubicAt interpolates output index dst of a length-n → m resize: src = (n/m)·(dst + 0.5) − 0.5 (not clamped),
// taps ⌊src⌋−1 … ⌊src⌋+2 clamped to [0, n−1], weighted by the cubic kernel at distances 1+t, t, 1−t, 2−t.
func cubicAt(at func(int) float64, dst, n, m int) float64 {
	scale := float64(n) / float64(m)
	src := scale*(float64(dst)+0.5) - 0.5
	i := math.Floor(src)
	t := src - i
	w := [4]float64{cubic(1 + t), cubic(t), cubic(1 - t), cubic(2 - t)}
	var s float64
	for k := 0; k < 4; k++ {
		s += w[k] * at(min(max(int(i)-1+k, 0), n-1))
	}
	return s
}

// cubic is the bicubic convolution kernel with A = −0.75.
func cubic(x float64) float64 {
	const A = -0.75
	x = math.Abs(x)
	switch {
	case x <= 1:
		return ((A+2)*x-(A+3))*x*x + 1
	case x < 2:
		return ((A*x-5*A)*x+8*A)*x - 4*A
	}
	return 0
}
