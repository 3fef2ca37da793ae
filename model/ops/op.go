// Package ops holds the fused Gorgonia operations of the FlexAttention model and the plain CPU kernels
// behind them. Each operation computes its forward pass and builds its own backward pass from further
// operations of this package, so the autodiff graph stays small and the numerics stay in code we own.
//
// Every operation works in float32 (training) and float64 (checks). Activations are row-major 2-D
// tensors [rows, width]; batch and sequence are folded into rows.
package ops

import (
	"fmt"
	"hash"
	"hash/fnv"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Float is the element type of every kernel.
type Float interface{ ~float32 | ~float64 }

var nextID atomic.Uint64

// fnOp is the one Gorgonia operation type of this package: a name, a forward function and an optional
// symbolic backward. Every instance carries a unique id, because operations hold hidden state (row maps,
// selection buffers) and Gorgonia would otherwise merge two of them with the same inputs.
type fnOp struct {
	name    string
	id      uint64
	inTypes []hm.Type
	outType hm.Type
	shape   func(in []tensor.Shape) (tensor.Shape, error)
	do      doFunc
	args    any                                                  // the parameters a Device reads (Kernel.Args)
	dev     Device                                               // the graph's device when the operation was built, or nil
	mem     *Arena                                               // the graph's arena when the operation was built (outputs and scratch), or nil
	diff    []bool                                               // which inputs carry a gradient
	grad    func(in G.Nodes, out, grad *G.Node) (G.Nodes, error) // nil entries for inputs without one
	view    bool                                                 // on a device its output is a view of its input's memory (Unpack)
	exact   bool                                                 // as a backward reader, it reads its inputs' float32 numbers (PlanHolds)
	free    []*G.Node                                            // values no node reads after this one (PlanReleases)
	saved   *Saved                                               // the saved state this last reader of it frees (PlanReleases)
	held    *holds                                               // the graph's values held in bfloat16 (PlanHolds), or nil
	pack    []*G.Node                                            // values to hold in bfloat16 once this has run (PlanHolds)
	unpack  []*G.Node                                            // held values to widen before this runs (PlanHolds)
}

func (o *fnOp) Arity() int { return len(o.inTypes) }
func (o *fnOp) Type() hm.Type {
	ts := append(append([]hm.Type{}, o.inTypes...), o.outType)
	return hm.NewFnType(ts...)
}
func (o *fnOp) InferShape(ds ...G.DimSizer) (tensor.Shape, error) {
	shapes, err := G.DimSizersToShapes(ds)
	if err != nil {
		return nil, err
	}
	return o.shape(shapes)
}

// Do runs the operation's kernel: on the graph's device, or on the CPU. Around it, it widens the held values
// this is the first backward reader of, holds in bfloat16 those whose last forward read this is, and
// frees the values no operation reads any more (PlanHolds, PlanReleases).
func (o *fnOp) Do(in ...G.Value) (G.Value, error) {
	in, err := o.held.unpack(o.unpack, in)
	if err != nil {
		return nil, fmt.Errorf("ops: %s: %w", o.name, err)
	}
	var out G.Value
	if o.dev != nil {
		out, err = o.dev.Run(Kernel{Name: o.name, Args: o.args, cpu: o.do}, in)
	} else {
		out, err = o.do(o.mem, in)
	}
	if err != nil {
		return nil, err
	}
	if err := o.held.pack(o.pack); err != nil {
		return nil, fmt.Errorf("ops: %s: %w", o.name, err)
	}
	o.release()
	return out, nil
}
func (o *fnOp) ReturnsPtr() bool      { return false }
func (o *fnOp) CallsExtern() bool     { return false }
func (o *fnOp) OverwritesInput() int  { return -1 }
func (o *fnOp) WriteHash(h hash.Hash) { fmt.Fprintf(h, "flextrain.%s#%d", o.name, o.id) }
func (o *fnOp) Hashcode() uint32 {
	h := fnv.New32a()
	o.WriteHash(h)
	return h.Sum32()
}
func (o *fnOp) String() string { return o.name }
func (o *fnOp) DiffWRT(n int) []bool {
	if o.diff == nil {
		return make([]bool, n)
	}
	return o.diff
}
func (o *fnOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if o.grad == nil {
		return nil, fmt.Errorf("ops: %s has no gradient", o.name)
	}
	return o.grad(in, out, grad)
}

// apply builds the node of op over children, taking the input types from the children.
func apply(op *fnOp, outDims int, children ...*G.Node) (*G.Node, error) {
	op.id = nextID.Add(1)
	op.mem = arenaOf(children[0].Graph())
	op.dev = deviceOf(children[0].Graph())
	dt := children[0].Dtype()
	for _, c := range children {
		op.inTypes = append(op.inTypes, nodeType(c.Dims(), c.Dtype()))
	}
	op.outType = nodeType(outDims, dt)
	n, err := G.ApplyOp(op, children...)
	if err != nil {
		return nil, fmt.Errorf("ops: %s: %w", op.name, err)
	}
	return n, nil
}

func nodeType(dims int, dt tensor.Dtype) hm.Type {
	if dims == 0 {
		return dt
	}
	return G.TensorType{Dims: dims, Of: dt}
}

// slices returns the backing data of a tensor value.
func slice[T Float](v G.Value) []T {
	switch x := v.(type) {
	case *G.F32:
		return any([]float32{float32(*x)}).([]T)
	case *G.F64:
		return any([]float64{float64(*x)}).([]T)
	}
	return v.Data().([]T)
}

// newDense allocates a zeroed output of dtype dt and the given shape.
func newDense(dt tensor.Dtype, shape ...int) *tensor.Dense {
	return tensor.New(tensor.Of(dt), tensor.WithShape(shape...))
}

// sameShape is the shape function of element-wise operations.
func sameShape(in []tensor.Shape) (tensor.Shape, error) { return in[0].Clone(), nil }

// shapeOf returns the shape of a tensor value as ints.
func shapeOf(v G.Value) []int { return []int(v.Shape()) }

// scalarValue returns a rank-0 value of the given dtype.
func scalarValue(dt tensor.Dtype, x float64) G.Value {
	if dt == tensor.Float32 {
		return G.NewF32(float32(x))
	}
	return G.NewF64(x)
}

type doFunc = func(m *Arena, in []G.Value) (G.Value, error)

// pick returns a forward function that runs the float32 or float64 instance by the first input's dtype.
func pick(f32, f64 doFunc) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		if v[0].Dtype() == tensor.Float32 {
			return f32(m, v)
		}
		return f64(m, v)
	}
}

// dtypeOf is the tensor dtype of T.
func dtypeOf[T Float]() tensor.Dtype {
	var z T
	if _, ok := any(z).(float32); ok {
		return tensor.Float32
	}
	return tensor.Float64
}
