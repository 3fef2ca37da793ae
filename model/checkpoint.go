package model

import (
	"fmt"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// Recomputation (gradient checkpointing, Options.Recompute): a decoder layer with a trainable weight is one
// operation of the step's graph. Its forward pass builds the layer as a graph of its own, runs it, keeps
// the layer's output and the next layer's selection cells, and gives every other value back at once (to a
// scratch arena on the CPU; on a device, Device.ReleaseAfter); its backward pass builds the layer again,
// runs it forward, then backward from the upstream gradient (Backpropagate, seeded with it), and returns
// the gradients of the layer's input and trainable weights packed (ops.Concat). So the step keeps each
// such layer's input, not its activations, and computes its forward pass twice; the layer's graph is the
// one the step would hold, so the numbers are the same. A frozen layer ahead of them runs the same way,
// without the backward pass.

// recomputes reports whether layer l runs as one operation in a training graph with Options.Recompute:
// when one of its weights trains (it is computed again in the backward pass), and when nothing of it
// needs a gradient (a frozen layer before them, h without gradient: its values go as soon as it is done,
// and it has no backward pass).
func (b *builder[T]) recomputes(l int, h *G.Node) bool {
	if !b.opt.Recompute || b.opt.Mode != Train || b.opt.Trainable == nil {
		return false
	}
	return len(b.layerParams(l)) > 0 || !b.needs[h]
}

// layerParams are the trainable weights layer l uses, in name order: the HR projections only where it is a
// FlexAttention layer.
func (b *builder[T]) layerParams(l int) []string {
	p := fmt.Sprintf("model.layers.%d.", l)
	flex := b.view == ViewFlex && l >= b.cfg.Flex.NSA
	var names []string
	for _, name := range b.w.Names() {
		if strings.HasPrefix(name, p) && b.opt.Trainable(name) && (flex || !strings.HasSuffix(name, "_hd.weight")) {
			names = append(names, name)
		}
	}
	return names
}

// recomputed adds layer l as one recomputed operation on top of h, with the selection cells it uses
// (nil before the FlexAttention layers); it returns the layer's output and the cells it chooses for l+1.
func (b *builder[T]) recomputed(l int, h, cells *G.Node) (*G.Node, *G.Node, error) {
	b.ropeTables() // made now, in the step's arena: every recomputation shares them
	b.hrRope()
	names := b.layerParams(l)
	in := G.Nodes{h}
	for _, name := range names {
		w, err := b.param(name)
		if err != nil {
			return nil, nil, err
		}
		in = append(in, w)
	}
	if cells != nil {
		in = append(in, cells)
		if b.view == ViewFlex && l >= b.cfg.Flex.NSA {
			b.cells[l] = cells // Selection reads them
		}
	}
	withHD := b.hd != nil && b.view == ViewFlex && l >= b.cfg.Flex.NSA
	if withHD { // an input, so that it is computed before (on a device it is the graph's own value)
		in = append(in, b.hd)
	}
	r := &recomputation[T]{b: b, l: l, names: names, withCells: cells != nil, withHD: withHD, needH: b.needs[h]}
	D, rows := b.cfg.Text.HiddenSize, b.lay.B*b.lay.N
	if l == b.cfg.Text.NumLayers-1 && b.lossRows != nil {
		rows = len(b.lossRows)
	}
	diff := make([]bool, len(in))
	diff[0] = r.needH
	for i := range names {
		diff[1+i] = true
	}
	out, err := ops.Func(ops.FuncSpec{Name: fmt.Sprintf("Layer%d", l), Shape: tensor.Shape{rows, D}, Do: r.forward,
		Diff: diff, Grad: r.grad, Anywhere: true}, in...)
	if err != nil {
		return nil, nil, err
	}
	b.needs[out] = r.needH || len(names) > 0
	if !b.choosesCells(l) {
		return out, nil, nil
	}
	G2 := b.cfg.Flex.SelectGrid * b.cfg.Flex.SelectGrid
	next, err := ops.Func(ops.FuncSpec{Name: fmt.Sprintf("Layer%dCells", l), Shape: tensor.Shape{b.lay.B * b.lay.N, G2},
		Do: func(*ops.Arena, []G.Value) (G.Value, error) { return r.next, nil }, Anywhere: true}, out)
	return out, next, err
}

// choosesCells reports whether layer l selects the cells of layer l+1 (as layer does).
func (b *builder[T]) choosesCells(l int) bool {
	return b.view == ViewFlex && l >= b.cfg.Flex.NSA-1 && l < b.cfg.Text.NumLayers-1
}

// recomputation is one recomputed layer: its inputs are the layer's input h, its trainable weights (names)
// and, withCells, the selection cells it uses and, withHD, the HR features.
type recomputation[T ops.Float] struct {
	b         *builder[T]
	l         int
	names     []string
	withCells bool
	withHD    bool
	needH     bool
	next      G.Value // the cells the forward pass chose for layer l+1, kept with the step's values
}

// forward runs the layer and returns its output; the next layer's cells wait in r.next.
func (r *recomputation[T]) forward(m *ops.Arena, in []G.Value) (G.Value, error) {
	sub, out, next, err := r.build(in, false)
	if err != nil {
		return nil, err
	}
	defer sub.close()
	if err := sub.run(nil, out, next); err != nil {
		return nil, err
	}
	if next == nil {
		return sub.keep(m, out.Value())[0], nil
	}
	kept := sub.keep(m, out.Value(), next.Value())
	r.next = kept[1]
	return kept[0], nil
}

// grad is the layer's backward pass: one operation over the forward's inputs and the upstream gradient g,
// whose packed output is unpacked into the gradients of h (when it needs one) and of each weight.
func (r *recomputation[T]) grad(in G.Nodes, g *G.Node) (G.Nodes, error) {
	sizes := make([]tensor.Shape, len(in))
	want := make([]bool, len(in))
	n := 0
	for i, x := range in {
		sizes[i] = x.Shape()
		want[i] = (i == 0 && r.needH) || (i > 0 && i <= len(r.names))
		if want[i] {
			n += sizes[i].TotalSize()
		}
	}
	packed, err := ops.Func(ops.FuncSpec{Name: fmt.Sprintf("Layer%dGrad", r.l), Shape: tensor.Shape{n},
		Do: r.backward, Anywhere: true}, append(in[:len(in):len(in)], g)...)
	if err != nil {
		return nil, err
	}
	for i := range sizes { // the packed tensor holds the wanted gradients only
		if !want[i] {
			sizes[i] = tensor.Shape{0}
		}
	}
	return ops.UnpackAll(packed, sizes, want)
}

// backward runs the layer forward again, then backward from the upstream gradient (the last input), and
// packs the gradients of h (when it needs one) and of the weights.
func (r *recomputation[T]) backward(m *ops.Arena, in []G.Value) (G.Value, error) {
	sub, out, _, err := r.build(in[:len(in)-1], true)
	if err != nil {
		return nil, err
	}
	defer sub.close()
	seed := G.NodeFromAny(sub.g, in[len(in)-1], G.WithName("upstream"))
	wrt := G.Nodes{}
	if r.needH {
		wrt = append(wrt, sub.input)
	}
	for _, name := range r.names {
		wrt = append(wrt, sub.params[name])
	}
	grads, err := G.Backpropagate(G.Nodes{out}, G.Nodes{seed}, wrt)
	if err != nil {
		return nil, fmt.Errorf("model: layer %d recomputed: backward: %w", r.l, err)
	}
	packed, err := ops.Concat(grads...)
	if err != nil {
		return nil, err
	}
	if err := sub.run(seed, packed); err != nil {
		return nil, err
	}
	return sub.keep(m, packed.Value())[0], nil
}

// layerGraph is one recomputation's own graph of the layer. On a device, mark is where its values begin
// (Device.Mark): they go when it closes, but those it keeps.
type layerGraph[T ops.Float] struct {
	*builder[T]
	input *G.Node
	mark  int
	kept  []G.Value
}

// keep makes values of the layer's graph outlive it: on a device they stay where they are (close gives
// back every other value); on the CPU they are copied into the step's arena m (the scratch is released).
func (s *layerGraph[T]) keep(m *ops.Arena, vals ...G.Value) []G.Value {
	if s.dev != nil {
		s.kept = append(s.kept, vals...)
		return vals
	}
	out := make([]G.Value, len(vals))
	for i, v := range vals {
		out[i] = keep[T](m, v)
	}
	return out
}

// sub is a builder of a graph of its own for a part of b's graph (a recomputed layer, a part of the tower
// on a device): b's batch, layout and tables, its own nodes, values from mem, and opt.
func (b *builder[T]) sub(mem *ops.Arena, opt Options) *builder[T] {
	m := &Graph{cfg: b.cfg, view: b.view, dense: b.dense, ropeCos: b.ropeCos, ropeSin: b.ropeSin, textCos: b.textCos,
		textSin: b.textSin, g: G.NewGraph(), lay: b.lay, rows: b.rows, oriSizes: b.oriSizes, boxes: b.boxes,
		lossRows: b.lossRows, params: map[string]*G.Node{}, grads: map[string]*G.Node{}, cells: map[int]*G.Node{},
		plans: map[int]*ops.FlexPlan{}, needs: map[*G.Node]bool{}, mem: mem, dev: opt.Device}
	ops.Attach(m.g, mem)
	ops.AttachDevice(m.g, opt.Device)
	return &builder[T]{Graph: m, w: b.w, frozen: b.frozen, opt: opt}
}

// runAlone runs a sub builder's graph to its end, its backward pass from from (nil: none); its values but
// those of out go as soon as nothing reads them (Graph.plan).
func (s *builder[T]) runAlone(from *G.Node, out ...*G.Node) error {
	if err := s.plan(s.opt.Products, from, out...); err != nil {
		return err
	}
	s.vm = G.NewTapeMachine(s.g, G.WithEngine(engineOf(s.dev, s.mem)))
	return s.vm.RunAll()
}

// detach closes a sub builder's machine and detaches its graph (its values stay where they were lent).
func (s *builder[T]) detach() {
	if s.vm != nil {
		s.vm.Close()
	}
	ops.Detach(s.g)
	ops.DetachDevice(s.g)
}

// build makes the layer's graph over the values in: h, the trainable weights, the cells. With grad, h and
// the weights need gradients as in the step's graph.
func (r *recomputation[T]) build(in []G.Value, grad bool) (*layerGraph[T], *G.Node, *G.Node, error) {
	b := r.b
	if b.scratch == nil {
		b.scratch = b.mem.Child() // kept with the step's arena: the next step finds its buffers
	}
	opt := b.opt
	if !grad {
		opt.Trainable = func(string) bool { return false }
	}
	sub := &layerGraph[T]{builder: b.sub(b.scratch, opt)}
	if sub.dev != nil {
		sub.mark = sub.dev.Mark()
	}
	sub.frontAttn = b.frontAttn // layer n_sa − 1's selection writes its image attention there for the front cache
	m := sub.Graph
	sub.input = G.NodeFromAny(m.g, in[0], G.WithName("layer_input"))
	sub.needs[sub.input] = grad && r.needH
	for i, name := range r.names { // the step's own weights, bound as they are
		n := G.NodeFromAny(m.g, in[1+i], G.WithName(name))
		sub.params[name], sub.needs[n] = n, grad
	}
	at := 1 + len(r.names)
	var cells *G.Node
	if r.withCells {
		cells = G.NodeFromAny(m.g, in[at], G.WithName("cells"))
		at++
	}
	if r.withHD {
		sub.hd = G.NodeFromAny(m.g, in[at], G.WithName("hd_features"))
	}
	out, next, err := sub.layer(r.l, sub.input, cells)
	if err != nil {
		sub.close()
		return nil, nil, nil, fmt.Errorf("model: layer %d recomputed: %w", r.l, err)
	}
	return sub, out, next, nil
}

// run runs the layer's graph, its backward pass from from (nil: none), whose values but those of out go as
// soon as nothing reads them.
func (s *layerGraph[T]) run(from *G.Node, out ...*G.Node) error {
	if err := s.runAlone(from, out...); err != nil {
		return fmt.Errorf("model: recomputed layer: %w", err)
	}
	return nil
}

// close gives every value of the layer's graph back: to the scratch arena, and on a device all but the kept.
func (s *layerGraph[T]) close() {
	s.detach()
	s.mem.Release()
	if s.dev != nil {
		s.dev.ReleaseAfter(s.mark, s.kept...)
	}
}

// keep copies a value of a layer's graph into the step's arena, where it outlives the scratch.
func keep[T ops.Float](m *ops.Arena, v G.Value) G.Value {
	out, data := ops.Alloc[T](m, v.Shape()...)
	copy(data, v.Data().([]T))
	return out
}
