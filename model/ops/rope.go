package ops

import (
	"fmt"
	"math"
	"sync"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// RopeTables returns the RoPE cos and sin tables [n, dh] for positions 0…n−1 (docs/DESIGN.md §6):
// inv_freq_i = θ^(−2i/dh), angle = pos·inv_freq, tables = cos/sin(cat(angle, angle)). Computed in float64.
func RopeTables(n, dh int, theta float64) (cos, sin []float64) {
	cos, sin = make([]float64, n*dh), make([]float64, n*dh)
	h := dh / 2
	for p := 0; p < n; p++ {
		for i := 0; i < h; i++ {
			a := float64(p) * math.Pow(theta, -float64(2*i)/float64(dh))
			c, s := math.Cos(a), math.Sin(a)
			cos[p*dh+i], cos[p*dh+h+i] = c, c
			sin[p*dh+i], sin[p*dh+h+i] = s, s
		}
	}
	return cos, sin
}

// Rope rotates every head of x [R, H·dh]: x' = x·cos + rot(x)·sin with rot(x) = cat(−x₂, x₁).
// Row r uses row r mod period of the tables cos, sin [period, dh]; the decoder uses period N (positions
// restart in every sample).
func Rope(x *G.Node, cos, sin []float64, dh int) (*G.Node, error) {
	period := len(cos) / dh
	op := &fnOp{name: "Rope", diff: []bool{true}, args: RopeArgs{Cos: cos, Sin: sin, HeadDim: dh}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || in[0][1]%dh != 0 || in[0][0]%period != 0 {
			return nil, fmt.Errorf("ops: Rope: x %v does not fit head dim %d and period %d", in[0], dh, period)
		}
		return in[0].Clone(), nil
	}
	op.do = pick(ropeDo[float32](cos, sin, dh, false), ropeDo[float64](cos, sin, dh, false))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		back := &fnOp{name: "RopeGrad", args: RopeArgs{Cos: cos, Sin: sin, HeadDim: dh, Inverse: true}, shape: sameShape, do: pick(ropeDo[float32](cos, sin, dh, true), ropeDo[float64](cos, sin, dh, true))}
		d, err := apply(back, 2, g)
		return G.Nodes{d}, err
	}
	return apply(op, 2, x)
}

func ropeDo[T Float](cos, sin []float64, dh int, transpose bool) doFunc {
	var c, s []T
	var once sync.Once // converted at the first run, in the one type that runs: not per run, not per type
	return func(m *Arena, v []G.Value) (G.Value, error) {
		once.Do(func() { c, s = Convert[T](nil, cos), Convert[T](nil, sin) })
		x := slice[T](v[0])
		out, y := allocFull[T](m, shapeOf(v[0])...)
		width := shapeOf(v[0])[1]
		period := len(c) / dh
		parallelRange(len(x)/width, grain/width, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				t := (r % period) * dh
				ropeRow(y[r*width:(r+1)*width], x[r*width:(r+1)*width], c[t:t+dh], s[t:t+dh], dh, transpose)
			}
		})
		return out, nil
	}
}

// ropeRow applies RopeRow to every head of a row x [H·dh], all with the same tables [dh].
func ropeRow[T Float](y, x, cos, sin []T, dh int, transpose bool) {
	if ropeRowVector(y, x, cos, sin, dh, transpose) {
		return
	}
	for h := 0; h < len(x); h += dh {
		RopeRow(y[h:h+dh], x[h:h+dh], cos, sin, transpose)
	}
}

// RopeRow rotates one head vector: y = x·cos + rot(x)·sin, or with transpose the adjoint
// y = x·cos + rotᵀ(x·sin) with rotᵀ(z) = cat(z₂, −z₁), which is the backward pass.
func RopeRow[T Float](y, x, cos, sin []T, transpose bool) {
	h := len(x) / 2
	x1, x2, y1, y2 := x[:h], x[h:2*h], y[:h], y[h:2*h]
	c1, c2, s1, s2 := cos[:h], cos[h:2*h], sin[:h], sin[h:2*h]
	if transpose {
		for i, a := range x1 {
			b := x2[i]
			y1[i] = a*c1[i] + b*s2[i]
			y2[i] = b*c2[i] - a*s1[i]
		}
		return
	}
	for i, a := range x1 {
		b := x2[i]
		y1[i] = a*c1[i] - b*s1[i]
		y2[i] = b*c2[i] + a*s2[i]
	}
}

// Convert copies values of type S (float32 or float64) into a Scratch buffer of T.
func Convert[T, S Float](m *Arena, x []S) []T {
	y := Scratch[T](m, len(x))
	for i, v := range x {
		y[i] = T(v)
	}
	return y
}

// RopeAt returns row p of RopeTables, computed alone (bit-identical to the table's row).
func RopeAt(p, dh int, theta float64) (cos, sin []float64) {
	cos, sin = make([]float64, dh), make([]float64, dh)
	h := dh / 2
	for i := 0; i < h; i++ {
		a := float64(p) * math.Pow(theta, -float64(2*i)/float64(dh))
		cos[i], cos[h+i], sin[i], sin[h+i] = math.Cos(a), math.Cos(a), math.Sin(a), math.Sin(a)
	}
	return cos, sin
}
