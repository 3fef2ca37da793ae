package ops

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/gemm"
)

// Linear is y = x·wᵀ for x [R, in] and w [out, in], the layout of a torch Linear weight, and its gradients
// g·w and gᵀ·x, every product of precision p. needX and needW say which inputs need a gradient, so that
// frozen weights and frozen inputs cost no backward work.
func Linear(x, w *G.Node, needX, needW bool, p Precision) (*G.Node, error) {
	if err := checkPrecision("Linear", p, x); err != nil {
		return nil, err
	}
	args := MatMulArgs{TB: true, Precision: p}
	op := &fnOp{name: "Linear", diff: []bool{needX, needW}, args: args}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || len(in[1]) != 2 || in[0][1] != in[1][1] {
			return nil, fmt.Errorf("ops: Linear: x %v and w %v do not fit", in[0], in[1])
		}
		return tensor.Shape{in[0][0], in[1][0]}, nil
	}
	op.do = pick(matmulDo[float32](args), matmulDo[float64](args))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := make(G.Nodes, 2)
		var err error
		if needX {
			if res[0], err = matmulNode("LinearGradX", g, in[1], MatMulArgs{Precision: p}); err != nil {
				return nil, err
			}
		}
		if needW {
			if res[1], err = matmulNode("LinearGradW", g, in[0], MatMulArgs{TA: true, Precision: p}); err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	return apply(op, 2, x, w)
}

// matmulNode is op(a)·op(b) (args) with no gradient of its own (it only appears in backward passes).
func matmulNode(name string, a, b *G.Node, args MatMulArgs) (*G.Node, error) {
	op := &fnOp{name: name, args: args}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		m, k := matDims(in[0], args.TA)
		k2, n := matDims(in[1], args.TB)
		if k != k2 {
			return nil, fmt.Errorf("ops: %s: %v and %v do not fit", name, in[0], in[1])
		}
		return tensor.Shape{m, n}, nil
	}
	op.do = pick(matmulDo[float32](args), matmulDo[float64](args))
	return apply(op, 2, a, b)
}

// matmulDo computes op(a)·op(b) in the precision of args, a transposed when TA and b when TB.
func matmulDo[T Float](args MatMulArgs) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		rows, k := matDims(v[0].Shape(), args.TA)
		_, cols := matDims(v[1].Shape(), args.TB)
		out, y := allocFull[T](m, rows, cols)
		matmulIn(args.Precision, args.TA, args.TB, rows, cols, k, 1, slice[T](v[0]), slice[T](v[1]), 0, y)
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
// and, when needX, the gradient of x is g·w, both products of precision p (BF16 needs a bfloat16 w, whose
// values are bfloat16 already). Both products widen w a panel at a time (gemm.SgemmHalf), so the weight is
// never widened whole and the numbers are bitwise Linear's on the widened weight.
func LinearHalf(x *G.Node, w half.Matrix, needX bool, p Precision) (*G.Node, error) {
	if err := checkPrecision("LinearHalf", p, x); err != nil {
		return nil, err
	}
	if p == BF16 && w.Kind != half.BFloat16 {
		return nil, fmt.Errorf("ops: LinearHalf: bfloat16 products of a %v weight", w.Kind)
	}
	args := HalfArgs{W: w, Transposed: true, Precision: p}
	op := &fnOp{name: "LinearHalf", diff: []bool{needX}, args: args}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || in[0][1] != w.Cols {
			return nil, fmt.Errorf("ops: LinearHalf: x %v and w [%d %d] do not fit", in[0], w.Rows, w.Cols)
		}
		return tensor.Shape{in[0][0], w.Rows}, nil
	}
	op.do = halfProduct(args)
	op.grad = func(_ G.Nodes, _, g *G.Node) (G.Nodes, error) {
		if !needX {
			return G.Nodes{nil}, nil
		}
		gradArgs := HalfArgs{W: w, Precision: p}
		gx := &fnOp{name: "LinearHalfGradX", args: gradArgs, do: halfProduct(gradArgs)}
		gx.shape = func(in []tensor.Shape) (tensor.Shape, error) { return tensor.Shape{in[0][0], w.Cols}, nil }
		n, err := apply(gx, 2, g)
		return G.Nodes{n}, err
	}
	return apply(op, 2, x)
}

// halfProduct is x·wᵀ (args.Transposed) or x·w for x [rows, ·], in float32, x rounded first with BF16.
func halfProduct(args HalfArgs) doFunc {
	w := args.W
	return func(m *Arena, v []G.Value) (G.Value, error) {
		if _, ok := v[0].Data().([]float32); !ok {
			return nil, fmt.Errorf("ops: LinearHalf: x is %v, a 16-bit weight multiplies float32 only", v[0].Dtype())
		}
		rows, k, n := shapeOf(v[0])[0], w.Cols, w.Rows
		if !args.Transposed {
			k, n = n, k
		}
		out, y := allocFull[float32](m, rows, n)
		switch x := slice[float32](v[0]); {
		case rows == 0:
		case args.Precision == BF16: // x rounded as gemm packs it; w is bfloat16 already
			gemm.SgemmHalfBF16(false, args.Transposed, rows, n, k, 1, x, k, w.Bits, w.Cols, 0, y, n)
		default:
			gemm.SgemmHalf(false, args.Transposed, rows, n, k, 1, x, k, w.Bits, w.Kind, w.Cols, 0, y, n)
		}
		return out, nil
	}
}
