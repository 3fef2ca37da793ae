package ops

import (
	"errors"
	"fmt"
	"slices"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Releaser is where a graph's values live, a Device or an Arena, when it can free a value before the
// graph's end. Without it every value of a step lives until the graph closes, so the step's peak is the
// whole forward pass plus the whole backward pass; with it (PlanReleases) the peak is about the values the
// backward pass reads, held at its start.
type Releaser interface {
	// Free frees the value of an operation's output, which no operation reads any more. A value it did not
	// lend for the graph (a weight, a host scalar) is left as it is.
	Free(v G.Value)
	// FreeSaved frees what an operation's forward pass saved for its backward pass (Saved), once the last
	// kernel that reads it has run.
	FreeSaved(s *Saved)
}

// PlanReleases arranges for the values of g's operations to be freed where they live (g's device when it
// is a Releaser, else g's arena) as soon as no operation reads them any more, and the saved state of an
// operation as soon as its backward kernels have run. keep are the nodes whose values are read after the
// graph has run (the loss, the gradients, the logits): they stay until Release, as do the graph's inputs.
//
// Each operation of this package frees, once its kernel has run, the values whose last reader has run by
// then, in the order Gorgonia's machine runs g's nodes (the order of its compiler: G.Sort reversed). A
// value read by one of Gorgonia's own operations (a sum of gradient contributions) goes at the next
// operation of this package. A value that a view outlives (an Unpack's part of a packed gradient) goes
// with the last reader of its views. A GPU refuses a value read after it was freed, so a machine that ran
// the nodes in another order would fail there, not read freed memory; on the CPU the arena's tests fill
// freed buffers with NaN (Arena.PoisonFrees).
func PlanReleases(g *G.ExprGraph, keep ...*G.Node) error {
	if deviceOf(g) == nil && arenaOf(g) == nil {
		return nil
	}
	order, err := machineOrder(g)
	if err != nil {
		return fmt.Errorf("ops: releases: %w", err)
	}
	last := lastReads(order)
	for _, n := range keep {
		if n != nil {
			last[owner(n)] = len(order)
		}
	}
	due := make([][]*G.Node, len(order)+1) // the values whose last read is at each position, in order
	for _, n := range order {
		if at, ok := last[n]; ok {
			due[at] = append(due[at], n)
		}
	}
	var pending []*G.Node
	for i, n := range order {
		pending = append(pending, due[i]...)
		op, ok := n.Op().(*fnOp)
		if !ok || op.releaser() == nil {
			continue
		}
		op.free, pending = pending, nil
	}
	planSavedReleases(order)
	return nil
}

// machineOrder is g's nodes in the order Gorgonia's tape machine runs them: its compiler's, G.Sort reversed.
func machineOrder(g *G.ExprGraph) (G.Nodes, error) {
	order, err := G.Sort(g)
	slices.Reverse(order)
	return order, err
}

// lastReads gives, for every value that an operation of this package made where it can be freed and that
// is not a view, the position in order of the last node that reads it or a view of it.
func lastReads(order G.Nodes) map[*G.Node]int {
	last := map[*G.Node]int{}
	for i, n := range order {
		if op, ok := n.Op().(*fnOp); ok && op.releaser() != nil && !op.view {
			last[n] = i + 1 // a value no node reads goes at the next node (once made, it is bound to n)
		}
	}
	for i, n := range order {
		for _, c := range childrenOf(n) {
			o := owner(c)
			if at, made := last[o]; made && at < i {
				last[o] = i
			}
		}
	}
	return last
}

// owner is the node whose memory n's value is: n itself, or for a view the node it is a view of.
func owner(n *G.Node) *G.Node {
	for {
		op, ok := n.Op().(*fnOp)
		if !ok || !op.view {
			return n
		}
		n = childrenOf(n)[0]
	}
}

// planSavedReleases gives the saved state of each operation to the last of the kernels that share its Args
// (its forward kernel and those of its backward pass) to free.
func planSavedReleases(order G.Nodes) {
	lastOf := map[*Saved]*fnOp{}
	for _, n := range order {
		op, ok := n.Op().(*fnOp)
		if !ok || op.releaser() == nil {
			continue
		}
		if s := savedOf(op.args); s != nil {
			if prev := lastOf[s]; prev != nil {
				prev.saved = nil
			}
			op.saved, lastOf[s] = s, op
		}
	}
}

// savedOf is the Saved of an operation's Args, or nil.
func savedOf(args any) *Saved {
	switch a := args.(type) {
	case *AttentionArgs:
		return &a.Saved
	case *FlexArgs:
		return &a.Saved
	case *XentArgs:
		return &a.Saved
	}
	return nil
}

// releaser is where o's values are freed before the graph's end: its device, or without one its arena; nil
// where they are not (a device that is not a Releaser, no arena).
func (o *fnOp) releaser() Releaser {
	if o.dev != nil {
		r, _ := o.dev.(Releaser)
		return r
	}
	if o.mem != nil {
		return o.mem
	}
	return nil
}

// release frees what PlanReleases gave o to free, once its kernel has run.
func (o *fnOp) release() {
	r := o.releaser()
	if r == nil {
		return
	}
	for _, n := range o.free {
		if v := n.Value(); v != nil {
			r.Free(o.held.current(v))
		}
	}
	if o.saved != nil {
		r.FreeSaved(o.saved)
	}
}

// childrenOf returns the inputs of n's operation.
func childrenOf(n *G.Node) G.Nodes {
	it := n.Graph().From(n.ID())
	out := make(G.Nodes, 0, it.Len())
	for it.Next() {
		out = append(out, it.Node().(*G.Node))
	}
	return out
}

// Engine is the tensor engine of a graph on the CPU whose values PlanReleases frees: Gorgonia's standard
// engine, but a sum of gradient contributions (the one operation of Gorgonia's own in a training graph)
// goes into a new buffer from the graph's arena a, never into the register the machine offers for reuse
// (whose value may be freed already) or into an input (which may be freed while the sum lives on). The
// sum's bits are the same either way.
func Engine(a *Arena) tensor.Engine { return freshSums{arena: a} }

type freshSums struct {
	G.StandardEngine
	arena *Arena
}

// Add is a + b in a new value lent by the arena.
func (e freshSums) Add(a, b tensor.Tensor, opts ...tensor.FuncOpt) (tensor.Tensor, error) {
	if fo := tensor.ParseFuncOpts(opts...); fo.Incr() != nil {
		return nil, errors.New("ops: a sum with an increment")
	}
	var out *tensor.Dense
	switch a.Dtype() {
	case tensor.Float32:
		out, _ = allocFull[float32](e.arena, a.Shape()...)
	case tensor.Float64:
		out, _ = allocFull[float64](e.arena, a.Shape()...)
	default:
		return e.StandardEngine.Add(a, b)
	}
	return e.StandardEngine.Add(a, b, tensor.WithReuse(out))
}
