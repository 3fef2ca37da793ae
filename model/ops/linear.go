package ops

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/gemm"
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
	op.do = pick(linearDo[float32], linearDo[float64])
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
	op := &fnOp{name: name, args: MatMulArgs{tA, tB}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		m, k := matDims(in[0], tA)
		k2, n := matDims(in[1], tB)
		if k != k2 {
			return nil, fmt.Errorf("ops: %s: %v and %v do not fit", name, in[0], in[1])
		}
		return tensor.Shape{m, n}, nil
	}
	op.do = pick(matmulDo[float32](tA, tB), matmulDo[float64](tA, tB))
	return apply(op, 2, a, b)
}

func linearDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	xs, ws := shapeOf(v[0]), shapeOf(v[1])
	out, y := allocFull[T](m, xs[0], ws[0])
	MatMulNT(y, slice[T](v[0]), slice[T](v[1]), xs[0], xs[1], ws[0])
	return out, nil
}

// matmulDo computes op(a)·op(b), a transposed when tA and b when tB.
func matmulDo[T Float](tA, tB bool) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		rows, k := matDims(v[0].Shape(), tA)
		_, cols := matDims(v[1].Shape(), tB)
		out, y := allocFull[T](m, rows, cols)
		matmul(tA, tB, rows, cols, k, 1, slice[T](v[0]), slice[T](v[1]), 0, y)
		return out, nil
	}
}

// matDims is the (rows, columns) of a matrix of shape s, transposed when t.
func matDims(s tensor.Shape, t bool) (int, int) {
	if t {
		return s[1], s[0]
	}
	return s[0], s[1]
}

// LinearHalf is Linear for a frozen weight held in 16 bits, w [out, in] (float32 graphs only): y = x·wᵀ,
// and, when needX, the gradient of x is g·w. Both products widen w a panel at a time (gemm.SgemmHalf), so
// the weight is never widened whole and the numbers are bitwise Linear's on the widened weight.
func LinearHalf(x *G.Node, w half.Matrix, needX bool) (*G.Node, error) {
	op := &fnOp{name: "LinearHalf", diff: []bool{needX}, args: HalfArgs{W: w, Transposed: true}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || in[0][1] != w.Cols {
			return nil, fmt.Errorf("ops: LinearHalf: x %v and w [%d %d] do not fit", in[0], w.Rows, w.Cols)
		}
		return tensor.Shape{in[0][0], w.Rows}, nil
	}
	op.do = halfProduct(w, true)
	op.grad = func(_ G.Nodes, _, g *G.Node) (G.Nodes, error) {
		if !needX {
			return G.Nodes{nil}, nil
		}
		gx := &fnOp{name: "LinearHalfGradX", args: HalfArgs{W: w}, do: halfProduct(w, false)}
		gx.shape = func(in []tensor.Shape) (tensor.Shape, error) { return tensor.Shape{in[0][0], w.Cols}, nil }
		n, err := apply(gx, 2, g)
		return G.Nodes{n}, err
	}
	return apply(op, 2, x)
}

// halfProduct is x·wᵀ (t) or x·w (!t) for x [rows, ·], in float32.
func halfProduct(w half.Matrix, t bool) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		if _, ok := v[0].Data().([]float32); !ok {
			return nil, fmt.Errorf("ops: LinearHalf: x is %v, a 16-bit weight multiplies float32 only", v[0].Dtype())
		}
		rows, k, n := shapeOf(v[0])[0], w.Cols, w.Rows
		if !t {
			k, n = n, k
		}
		out, y := allocFull[float32](m, rows, n)
		if rows > 0 {
			gemm.SgemmHalf(false, t, rows, n, k, 1, slice[float32](v[0]), k, w.Bits, w.Kind, w.Cols, 0, y, n)
		}
		return out, nil
	}
}
