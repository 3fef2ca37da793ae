package ops

import (
	"errors"
	"fmt"
	"slices"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Packer is a Releaser that can hold a value in bfloat16: the activations of a mixed-precision step between
// its passes (PlanHolds), in half their memory.
type Packer interface {
	Releaser
	// Pack returns v's numbers rounded to bfloat16 (to nearest, ties to even), in a block of their own lent
	// until Unpack or the graph's end. The caller frees v.
	Pack(v G.Value) (any, error)
	// Unpack returns a new float32 value of shape holding what Pack packed, and frees the packed block.
	Unpack(packed any, shape tensor.Shape) (G.Value, error)
}

// PlanHolds arranges for the activations of g to be held in bfloat16 between the passes of a training step,
// as mixed-precision training holds them: a value that the forward pass makes and the backward pass reads
// is rounded to bfloat16 once the forward pass has read it for the last time, and the backward pass reads
// the rounded numbers. The backward pass is from and every node that depends on it (the loss's gradient
// that seeds Gorgonia's backward pass, or a recomputed layer's upstream gradient); keep are the values read
// after the graph has run, which stay as they are.
//
// Where g's device is a Packer, a held value lies in bfloat16 until its first backward reader runs, which
// reads it widened into a new float32 value. On the CPU it is rounded in place: the same numbers, in the
// same memory (the CPU's memory is seldom the limit; its step would pay two passes over every activation).
//
// A value stays float32 where one of its backward readers reads it exactly: a norm's gradient reads the
// residual stream (norms in float32, as PyTorch's autocast has them), and a recomputed layer computes its
// forward pass again from its input, and the loss's gradient reads the logits. So does a value that a view
// or one of Gorgonia's own operations reads. What an operation saves for its backward pass is its own:
// FlexAttention holds its HR features and keys in bfloat16 itself (FlexPlan.Products); the probabilities
// and the loss's state stay float32.
func PlanHolds(g *G.ExprGraph, from *G.Node, keep ...*G.Node) error {
	dev := deviceOf(g)
	p, packs := dev.(Packer)
	if dev != nil && !packs {
		return errors.New("ops: the graph's device cannot hold values in bfloat16")
	}
	order, err := machineOrder(g)
	if err != nil {
		return fmt.Errorf("ops: holds: %w", err)
	}
	spans := heldSpans(order, from, keep)
	if len(spans) == 0 {
		return nil
	}
	h := &holds{packer: p, packed: map[*G.Node]any{}, unpacked: map[G.Value]G.Value{}}
	for _, n := range order { // every operation may read or free a held value
		if op, ok := n.Op().(*fnOp); ok {
			op.held = h
		}
	}
	for _, s := range spans {
		pack, unpack := order[s.pack].Op().(*fnOp), order[s.unpack].Op().(*fnOp)
		pack.pack = append(pack.pack, s.v)
		unpack.unpack = append(unpack.unpack, s.v)
	}
	return nil
}

// span is a held value v: packed after the node at position pack of the order, unpacked before the node
// at unpack, both operations of this package.
type span struct {
	v            *G.Node
	pack, unpack int
}

// heldSpans finds the values of order (a graph's nodes in the order its machine runs them) to hold between
// the passes, the backward pass being from and what depends on it (PlanHolds).
func heldSpans(order G.Nodes, from *G.Node, keep []*G.Node) []span {
	at := make(map[*G.Node]int, len(order))
	back := map[*G.Node]bool{}
	readers := map[*G.Node]G.Nodes{}
	for i, n := range order {
		at[n] = i
		for _, c := range childrenOf(n) {
			readers[c] = append(readers[c], n)
			back[n] = back[n] || back[c]
		}
		back[n] = back[n] || n == from
	}
	kept := map[*G.Node]bool{}
	for _, n := range keep {
		kept[n] = true
	}
	var spans []span
	for i, v := range order {
		op, ok := v.Op().(*fnOp)
		if !ok || op.view || back[v] || kept[v] || v.Dtype() != tensor.Float32 || v.Dims() == 0 {
			continue
		}
		s, ok := heldSpan(v, i, readers[v], at, back)
		if ok && s.pack == i { // no forward read: packed at the next operation, once v's value is bound to it
			s.pack = nextOp(order, i)
			ok = s.pack < s.unpack
		}
		if ok {
			spans = append(spans, s)
		}
	}
	return spans
}

// nextOp is the position in order of the first operation of this package after i (one exists: a backward
// reader).
func nextOp(order G.Nodes, i int) int {
	for j := i + 1; j < len(order); j++ {
		if _, ok := order[j].Op().(*fnOp); ok {
			return j
		}
	}
	return len(order)
}

// heldSpan is the span of v, made at position made, when it is held: every reader is an operation of this
// package that reads no view of it, a backward one reads it, none reads it exactly, and the last forward
// read comes before the first backward one.
func heldSpan(v *G.Node, made int, readers G.Nodes, at map[*G.Node]int, back map[*G.Node]bool) (span, bool) {
	s := span{v: v, pack: made, unpack: -1}
	for _, r := range readers {
		op, ok := r.Op().(*fnOp)
		if !ok || op.view || (back[r] && op.exact) {
			return span{}, false
		}
		switch i := at[r]; {
		case !back[r]:
			s.pack = max(s.pack, i)
		case s.unpack < 0 || i < s.unpack:
			s.unpack = i
		}
	}
	return s, s.unpack > s.pack
}

// holds is what PlanHolds arranged for one graph: the values in bfloat16 now (packed, by node) and, for
// each value unpacked, the float32 value its readers read instead (unpacked, by the value the node holds).
type holds struct {
	packer   Packer // nil: values are rounded in place
	packed   map[*G.Node]any
	unpacked map[G.Value]G.Value
}

// unpack makes the values of nodes readable again, before the first backward reader runs, and returns in
// with each held value replaced by what is read for it now.
func (h *holds) unpack(nodes []*G.Node, in []G.Value) ([]G.Value, error) {
	if h == nil || h.packer == nil {
		return in, nil
	}
	for _, n := range nodes {
		packed, ok := h.packed[n]
		if !ok {
			return nil, fmt.Errorf("%v was not packed before its backward pass", n.Name())
		}
		u, err := h.packer.Unpack(packed, n.Shape())
		if err != nil {
			return nil, fmt.Errorf("unpacking %v: %w", n.Name(), err)
		}
		delete(h.packed, n)
		h.unpacked[n.Value()] = u
	}
	out, cloned := in, false // the machine's slice stays as it is
	for i, v := range in {
		u, ok := h.unpacked[v]
		if !ok {
			continue
		}
		if !cloned {
			out, cloned = slices.Clone(in), true
		}
		out[i] = u
	}
	return out, nil
}

// pack holds the values of nodes in bfloat16, after their last forward read: packed, and the float32
// value freed, where the device packs; rounded in place otherwise.
func (h *holds) pack(nodes []*G.Node) error {
	for _, n := range nodes {
		v := n.Value()
		if h.packer == nil {
			roundInPlace(v.Data().([]float32))
			continue
		}
		packed, err := h.packer.Pack(v)
		if err != nil {
			return fmt.Errorf("packing %v: %w", n.Name(), err)
		}
		h.packed[n] = packed
		h.packer.Free(v)
	}
	return nil
}

// current is the value read for v now: what its unpacking made, or v itself.
func (h *holds) current(v G.Value) G.Value {
	if h != nil {
		if u, ok := h.unpacked[v]; ok {
			return u
		}
	}
	return v
}
