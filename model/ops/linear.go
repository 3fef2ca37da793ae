package ops

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Linear is y = x·wᵀ for x [R, in] and w [out, in], the layout of a torch Linear weight. needX and needW say
// which inputs need a gradient, so that frozen weights and frozen inputs cost no backward work.
func Linear(x, w *G.Node, needX, needW bool) (*G.Node, error) {
	op := &fnOp{name: "Linear", diff: []bool{needX, needW}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || len(in[1]) != 2 || in[0][1] != in[1][1] {
			return nil, fmt.Errorf("ops: Linear: x %v and w %v do not fit", in[0], in[1])
		}
		return tensor.Shape{in[0][0], in[1][0]}, nil
	}
	op.do = func(v []G.Value) (G.Value, error) {
		xs, ws := shapeOf(v[0]), shapeOf(v[1])
		out := newDense(v[0].Dtype(), xs[0], ws[0])
		if v[0].Dtype() == tensor.Float32 {
			MatMulNT(slice[float32](out), slice[float32](v[0]), slice[float32](v[1]), xs[0], xs[1], ws[0])
		} else {
			MatMulNT(slice[float64](out), slice[float64](v[0]), slice[float64](v[1]), xs[0], xs[1], ws[0])
		}
		return out, nil
	}
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := make(G.Nodes, 2)
		var err error
		if needX {
			if res[0], err = matmulNode("LinearGradX", g, in[1], false, false); err != nil {
				return nil, err
			}
		}
		if needW {
			if res[1], err = matmulNode("LinearGradW", g, in[0], true, false); err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	return apply(op, 2, x, w)
}

// matmulNode is op(a)·op(b) with no gradient of its own (it only appears in backward passes).
func matmulNode(name string, a, b *G.Node, tA, tB bool) (*G.Node, error) {
	op := &fnOp{name: name}
	dims := func(s tensor.Shape, t bool) (int, int) {
		if t {
			return s[1], s[0]
		}
		return s[0], s[1]
	}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		m, k := dims(in[0], tA)
		k2, n := dims(in[1], tB)
		if k != k2 {
			return nil, fmt.Errorf("ops: %s: %v and %v do not fit", name, in[0], in[1])
		}
		return tensor.Shape{m, n}, nil
	}
	op.do = func(v []G.Value) (G.Value, error) {
		m, k := dims(v[0].Shape(), tA)
		_, n := dims(v[1].Shape(), tB)
		out := newDense(v[0].Dtype(), m, n)
		if v[0].Dtype() == tensor.Float32 {
			matmul(tA, tB, m, n, k, 1, slice[float32](v[0]), slice[float32](v[1]), 0, slice[float32](out))
		} else {
			matmul(tA, tB, m, n, k, 1, slice[float64](v[0]), slice[float64](v[1]), 0, slice[float64](out))
		}
		return out, nil
	}
	return apply(op, 2, a, b)
}
