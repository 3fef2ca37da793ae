package ops

import (
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// FuncSpec describes an operation whose arithmetic its caller writes: the model's recomputed layers
// (gradient checkpointing), which run a whole layer as one operation of the step's graph.
type FuncSpec struct {
	Name  string
	Shape tensor.Shape // of the output
	// Do computes the output from the inputs' values; m is the graph's arena, which lends the output.
	Do func(m *Arena, in []G.Value) (G.Value, error)
	// Diff says which inputs carry a gradient; Grad builds the gradients of those (nil for the others)
	// from the output's gradient g. Both nil: no gradient.
	Diff []bool
	Grad func(in G.Nodes, g *G.Node) (G.Nodes, error)
	// Anywhere says that Do works on the values wherever they are (it builds a graph of its own on the
	// same device): a device calls it as it is (FuncArgs). Otherwise a device runs it on the CPU, if at all.
	Anywhere bool
}

// FuncArgs are the Args of a Func that runs anywhere: Run is its Do, for a device to call on its values.
type FuncArgs struct {
	Run func(in []G.Value) (G.Value, error)
}

// Func adds the operation of spec over children.
func Func(spec FuncSpec, children ...*G.Node) (*G.Node, error) {
	op := &fnOp{name: spec.Name, diff: spec.Diff, do: spec.Do, exact: true} // a recomputed layer starts again from its input
	if spec.Anywhere {
		op.args = FuncArgs{Run: func(in []G.Value) (G.Value, error) { return spec.Do(nil, in) }}
	}
	op.shape = func([]tensor.Shape) (tensor.Shape, error) { return spec.Shape.Clone(), nil }
	if spec.Grad != nil {
		op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) { return spec.Grad(in, g) }
	}
	return apply(op, len(spec.Shape), children...)
}

// Alloc returns a zeroed tensor of T and the given shape, lent by m (plain when m is nil): an output for
// a FuncSpec's Do.
func Alloc[T Float](m *Arena, shape ...int) (*tensor.Dense, []T) { return alloc[T](m, shape...) }

// UnpackAll splits a packed 1-D tensor of gradients, one of each shape after the other, into one node per
// shape: nil where want is false.
func UnpackAll(packed *G.Node, sizes []tensor.Shape, want []bool) (G.Nodes, error) {
	return unpackAll(packed, sizes, want)
}

// Concat lays its inputs' values one after the other in one 1-D tensor: a recomputed layer's gradients,
// packed in the layer's own graph. It has no gradient.
func Concat(children ...*G.Node) (*G.Node, error) {
	n := 0
	for _, c := range children {
		n += c.Shape().TotalSize()
	}
	op := &fnOp{name: "Concat", do: pick(concatDo[float32], concatDo[float64])}
	op.shape = func([]tensor.Shape) (tensor.Shape, error) { return tensor.Shape{n}, nil }
	return apply(op, 1, children...)
}

func concatDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	n := 0
	for _, x := range v {
		n += x.Shape().TotalSize()
	}
	out, y := allocFull[T](m, n)
	off := 0
	for _, x := range v {
		off += copy(y[off:], slice[T](x))
	}
	return out, nil
}
