package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// AddBias is y = x + b for x [R, C] and b [C].
func AddBias(x, b *G.Node, needX, needB bool) (*G.Node, error) {
	op := &fnOp{name: "AddBias", diff: []bool{needX, needB}, shape: sameShape}
	op.do = pick(addBiasDo[float32], addBiasDo[float64])
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := G.Nodes{nil, nil}
		if needX {
			res[0] = g
		}
		if needB {
			var err error
			if res[1], err = colSum(g); err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	return apply(op, 2, x, b)
}

func addBiasDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	x, b := slice[T](v[0]), slice[T](v[1])
	out, y := allocFull[T](m, shapeOf(v[0])...)
	copy(y, x)
	AddRowBias(y, b)
	return out, nil
}

// colSum sums a [R, C] tensor over its rows.
func colSum(g *G.Node) (*G.Node, error) {
	op := &fnOp{name: "ColSum"}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) { return tensor.Shape{in[0][1]}, nil }
	op.do = pick(colSumDo[float32], colSumDo[float64])
	return apply(op, 1, g)
}

func colSumDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	s := shapeOf(v[0])
	out, y := alloc[T](m, s[1])
	x := slice[T](v[0])
	for r := 0; r < s[0]; r++ {
		for c, xv := range x[r*s[1] : (r+1)*s[1]] {
			y[c] += xv
		}
	}
	return out, nil
}

// GELU is the exact (erf) GELU of the projector: x·Φ(x).
func GELU(x *G.Node) (*G.Node, error) {
	op := &fnOp{name: "GELU", diff: []bool{true}, shape: sameShape}
	op.do = pick(mapDo[float32](gelu), mapDo[float64](gelu))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		d, err := zipOp("GELUGrad", in[0], g, func(x, g float64) float64 { return g * geluGrad(x) })
		return G.Nodes{d}, err
	}
	return apply(op, x.Dims(), x)
}

func gelu(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
func geluGrad(x float64) float64 {
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
}

// SwiGLU is silu(gate) ⊙ up, the LLaMA MLP's gate.
func SwiGLU(gate, up *G.Node) (*G.Node, error) {
	op := &fnOp{name: "SwiGLU", diff: []bool{true, true}, shape: sameShape}
	op.do = pick(swigluDo[float32], swigluDo[float64])
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		back := func(name string, gate bool) (*G.Node, error) {
			op := &fnOp{name: name, shape: sameShape, do: pick(swigluGradDo[float32](gate), swigluGradDo[float64](gate))}
			return apply(op, 2, in[0], in[1], g)
		}
		dGate, err := back("SwiGLUGradGate", true)
		if err != nil {
			return nil, err
		}
		dUp, err := back("SwiGLUGradUp", false)
		return G.Nodes{dGate, dUp}, err
	}
	return apply(op, gate.Dims(), gate, up)
}

// sigm is σ(x) = 1/(1+e^−x) in T.
func sigm[T Float](x T) T { return 1 / (1 + exp(-x)) }

func swigluDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	a, b := slice[T](v[0]), slice[T](v[1])
	out, y := allocFull[T](m, shapeOf(v[0])...)
	parallelRange(len(a), grain, func(lo, hi int) {
		sigmoids(y[lo:hi], a[lo:hi], 1)
		for i := lo; i < hi; i++ {
			y[i] = a[i] * y[i] * b[i]
		}
	})
	return out, nil
}

// swigluGradDo: ∂/∂gate = g·up·σ(a)·(1 + a·(1−σ(a))), ∂/∂up = g·silu(a).
func swigluGradDo[T Float](gate bool) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		a, b, g := slice[T](v[0]), slice[T](v[1]), slice[T](v[2])
		out, d := allocFull[T](m, shapeOf(v[0])...)
		parallelRange(len(a), grain, func(lo, hi int) {
			sigmoids(d[lo:hi], a[lo:hi], 1)
			for i := lo; i < hi; i++ {
				x, s := a[i], d[i]
				if gate {
					d[i] = g[i] * b[i] * s * (1 + x*(1-s))
				} else {
					d[i] = g[i] * x * s
				}
			}
		})
		return out, nil
	}
}

// mapDo applies f element-wise, computing in float64.
func mapDo[T Float](f func(float64) float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x := slice[T](v[0])
		out, y := allocFull[T](m, shapeOf(v[0])...)
		mapInto(y, x, f)
		return out, nil
	}
}

// mapInto sets y[i] = f(x[i]), computed in float64, on all cores (y may be x): each element alone, so the
// bits do not depend on the cut.
func mapInto[T Float](y, x []T, f func(float64) float64) {
	parallelRange(len(x), grain, func(lo, hi int) {
		for i, v := range x[lo:hi] {
			y[lo+i] = T(f(float64(v)))
		}
	})
}

// zipDo applies f to two same-shaped inputs element-wise, computing in float64.
func zipDo[T Float](f func(a, b float64) float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		a, b := slice[T](v[0]), slice[T](v[1])
		if len(a) != len(b) {
			return nil, fmt.Errorf("ops: element-wise sizes %d and %d differ", len(a), len(b))
		}
		out, y := allocFull[T](m, shapeOf(v[0])...)
		for i := range y {
			y[i] = T(f(float64(a[i]), float64(b[i])))
		}
		return out, nil
	}
}

func zipOp(name string, a, b *G.Node, f func(a, b float64) float64) (*G.Node, error) {
	op := &fnOp{name: name, shape: sameShape, do: pick(zipDo[float32](f), zipDo[float64](f))}
	return apply(op, a.Dims(), a, b)
}

// Add is a + b for two tensors of one shape (the residual stream); the gradient passes to both unchanged.
func Add(a, b *G.Node) (*G.Node, error) {
	op := &fnOp{name: "Add", diff: []bool{true, true}, shape: sameShape, do: pick(addDo[float32], addDo[float64])}
	op.grad = func(_ G.Nodes, _, g *G.Node) (G.Nodes, error) { return G.Nodes{g, g}, nil }
	if !a.Shape().Eq(b.Shape()) {
		return nil, fmt.Errorf("ops: Add: shapes %v and %v differ", a.Shape(), b.Shape())
	}
	return apply(op, a.Dims(), a, b)
}

func addDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	a, b := slice[T](v[0]), slice[T](v[1])
	out, y := allocFull[T](m, shapeOf(v[0])...)
	parallelRange(len(y), grain, func(lo, hi int) {
		copy(y[lo:hi], a[lo:hi])
		AddTo(y[lo:hi], b[lo:hi])
	})
	return out, nil
}
