package model

import (
	"math"

	"github.com/flextrain/flextrain/model/ops"
)

// hrRopeTables returns the RoPE cos and sin tables of the HR keys of an image whose LR span starts at row i0
// (docs/DESIGN.md §7): the LR image rows of the decoder's tables, [g, g, dh], resized per channel to [Zg, Zg] with
// PyTorch's bicubic (align_corners=False, A = −0.75), flattened to [Zg·Zg, dh]. Not re-normalised.
func hrRopeTables(m *ops.Arena, cos, sin []float64, i0, g, zg, dh int) (hcos, hsin []float64) {
	return resizeSpan(m, cos, i0, g, zg, dh), resizeSpan(m, sin, i0, g, zg, dh)
}

func resizeSpan(m *ops.Arena, t []float64, i0, g, zg, dh int) []float64 {
	out := ops.Buffer[float64](m, zg*zg*dh)
	src, rows, dst := ops.Scratch[float64](m, g*g), ops.Scratch[float64](m, g*zg), ops.Scratch[float64](m, zg*zg)
	taps := cubicTaps(g, zg)
	for c := 0; c < dh; c++ {
		for i := range src {
			src[i] = t[(i0+i)*dh+c]
		}
		bicubic2D(dst, rows, src, taps, g, zg)
		for i, v := range dst {
			out[i*dh+c] = v
		}
	}
	ops.Recycle(m, src, rows, dst)
	return out
}

// bicubic2D resizes a [g, g] map x to [zg, zg] in out with the taps of a g → zg resize, first along columns
// (into rows, [g, zg]) then along rows.
func bicubic2D(out, rows, x []float64, taps []tap, g, zg int) {
	for i := 0; i < g; i++ {
		for j, tp := range taps {
			rows[i*zg+j] = tp.apply(x[i*g:], 1)
		}
	}
	for i, tp := range taps {
		for j := 0; j < zg; j++ {
			out[i*zg+j] = tp.apply(rows[j:], zg)
		}
	}
}

// tap is how one output index of a resize reads its input: four source indices and their weights.
type tap struct {
	at [4]int
	w  [4]float64
}

// apply is Σ w[k]·x[at[k]·stride], summed in tap order.
func (t tap) apply(x []float64, stride int) float64 {
	var s float64
	for k := 0; k < 4; k++ {
		s += t.w[k] * x[t.at[k]*stride]
	}
	return s
}

// cubicTaps are the taps of every output index dst of a length-n → m resize: src = (n/m)·(dst + 0.5) − 0.5
// (not clamped), taps ⌊src⌋−1 … ⌊src⌋+2 clamped to [0, n−1], weighted by the cubic kernel at distances 1+t,
// t, 1−t, 2−t.
func cubicTaps(n, m int) []tap {
	taps := make([]tap, m)
	scale := float64(n) / float64(m)
	for dst := range taps {
		src := scale*(float64(dst)+0.5) - 0.5
		i := math.Floor(src)
		t := src - i
		taps[dst].w = [4]float64{cubic(1 + t), cubic(t), cubic(1 - t), cubic(2 - t)}
		for k := 0; k < 4; k++ {
			taps[dst].at[k] = min(max(int(i)-1+k, 0), n-1)
		}
	}
	return taps
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
