package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"

	"github.com/flextrain/flextrain/model/ops"
)

// layer adds decoder layer l (docs/DESIGN.md §6, and §7 for l ≥ n_sa) on top of h [B·N, D]. cells are the
// selection cells layer l uses (from layer l−1); the returned cells are those layer l chooses for l+1.
func (b *builder[T]) layer(l int, h, cells *G.Node) (*G.Node, *G.Node, error) {
	p := fmt.Sprintf("model.layers.%d.", l)
	x, err := b.rmsNorm(h, p+"input_layernorm.weight")
	if err != nil {
		return nil, nil, err
	}
	q, k, v, err := b.qkv(x, p)
	if err != nil {
		return nil, nil, err
	}
	var o *G.Node
	flex := b.view == ViewFlex
	if flex && l >= b.cfg.Flex.NSA {
		o, err = b.flex(l, q, k, v, cells)
	} else {
		lay := b.attnLayout()
		lay.Frozen = !b.needs[q] && !b.needs[k] && !b.needs[v]
		o, err = b.track2(ops.Attention(q, k, v, lay))(q, k, v)
	}
	if err != nil {
		return nil, nil, err
	}
	var next *G.Node
	if flex && l >= b.cfg.Flex.NSA-1 && l < b.cfg.Text.NumLayers-1 {
		if next, err = ops.Select(q, k, b.selectPlan(l)); err != nil {
			return nil, nil, err
		}
	}
	if l == b.cfg.Text.NumLayers-1 {
		if h, o, err = b.lossRowsOnly(h, o); err != nil {
			return nil, nil, err
		}
	}
	if h, err = b.residual(h, o, p+"self_attn.o_proj.weight"); err != nil {
		return nil, nil, err
	}
	h, err = b.mlp(h, p)
	return h, next, err
}

// lossRowsOnly narrows the last layer's residual stream h and attention output o to the rows the loss reads
// (in training; otherwise it keeps them all). Past the last attention no row feeds another, so the rest of
// the layer, the final norm and lm_head need run over those rows only: in a training step that is most of
// the last layer's and all of lm_head's work, in both passes.
func (b *builder[T]) lossRowsOnly(h, o *G.Node) (*G.Node, *G.Node, error) {
	if b.lossRows == nil {
		return h, o, nil
	}
	h, err := b.track2(ops.GatherRows(h, b.lossRows, b.needs[h]))(h)
	if err != nil {
		return nil, nil, err
	}
	o, err = b.track2(ops.GatherRows(o, b.lossRows, b.needs[o]))(o)
	return h, o, err
}

// track2 adapts track to a (node, error) pair followed by its inputs.
func (b *builder[T]) track2(n *G.Node, err error) func(in ...*G.Node) (*G.Node, error) {
	return func(in ...*G.Node) (*G.Node, error) { return b.track(n, err, in...) }
}

func (b *builder[T]) rmsNorm(x *G.Node, name string) (*G.Node, error) {
	w, err := b.param(name)
	if err != nil {
		return nil, err
	}
	n, err := ops.RMSNorm(x, w, b.cfg.Text.RMSNormEps, b.needs[x], b.needs[w])
	return b.track(n, err, x, w)
}

// qkv projects x to rotated queries and keys and to values.
func (b *builder[T]) qkv(x *G.Node, p string) (q, k, v *G.Node, err error) {
	dh := b.cfg.HeadDim()
	cos, sin := b.ropeTables()
	rotated := func(name string) (*G.Node, error) {
		y, err := b.linear(x, name)
		if err != nil {
			return nil, err
		}
		return b.track2(ops.Rope(y, cos, sin, dh))(y)
	}
	if q, err = rotated(p + "self_attn.q_proj.weight"); err != nil {
		return
	}
	if k, err = rotated(p + "self_attn.k_proj.weight"); err != nil {
		return
	}
	v, err = b.linear(x, p+"self_attn.v_proj.weight")
	return
}

// residual is h + o·W_Oᵀ.
func (b *builder[T]) residual(h, o *G.Node, name string) (*G.Node, error) {
	y, err := b.linear(o, name)
	if err != nil {
		return nil, err
	}
	return b.track2(ops.Add(h, y))(h, y)
}

// mlp is h + down(silu(gate(y)) ⊙ up(y)) with y = post_attention_layernorm(h).
func (b *builder[T]) mlp(h *G.Node, p string) (*G.Node, error) {
	y, err := b.rmsNorm(h, p+"post_attention_layernorm.weight")
	if err != nil {
		return nil, err
	}
	gate, err := b.linear(y, p+"mlp.gate_proj.weight")
	if err != nil {
		return nil, err
	}
	up, err := b.linear(y, p+"mlp.up_proj.weight")
	if err != nil {
		return nil, err
	}
	a, err := b.track2(ops.SwiGLU(gate, up))(gate, up)
	if err != nil {
		return nil, err
	}
	return b.residual(h, a, p+"mlp.down_proj.weight")
}

// flex is FlexAttention layer l over the HR tokens its rows selected in layer l−1.
func (b *builder[T]) flex(l int, q, k, v, cells *G.Node) (*G.Node, error) {
	p := fmt.Sprintf("model.layers.%d.self_attn.", l)
	wk, err := b.param(p + "k_proj_hd.weight")
	if err != nil {
		return nil, err
	}
	wv, err := b.param(p + "v_proj_hd.weight")
	if err != nil {
		return nil, err
	}
	plan := b.flexPlan()
	b.plans[l], b.cells[l] = plan, cells
	n, err := ops.FlexAttention(q, k, v, wk, wv, b.hd, cells, plan, b.needs[wk] || b.needs[wv])
	return b.track(n, err, q, k, v, wk, wv)
}

// head adds the final norm, lm_head and, in training, the loss (docs/DESIGN.md §9).
func (b *builder[T]) head(h *G.Node) error {
	y, err := b.rmsNorm(h, "model.norm.weight")
	if err != nil {
		return err
	}
	if b.logits, err = b.linear(y, "lm_head.weight"); err != nil {
		return err
	}
	if b.opt.Mode == Train {
		b.loss, err = b.track2(ops.CrossEntropy(b.logits, b.targets()))(b.logits)
	}
	return err
}

// targets are the labels of the logits' rows: every row's, or the loss rows' when only those are computed.
func (b *builder[T]) targets() []int {
	all := b.lay.targets()
	if b.lossRows == nil {
		return all
	}
	out := make([]int, len(b.lossRows))
	for i, r := range b.lossRows {
		out[i] = all[r]
	}
	return out
}

// backward adds the gradient of the loss with respect to every trainable weight in the graph.
func (b *builder[T]) backward() error {
	if b.loss == nil || b.opt.Trainable == nil {
		return nil
	}
	var names []string
	var wrt G.Nodes
	for name, n := range b.params {
		if b.needs[n] {
			names, wrt = append(names, name), append(wrt, n)
		}
	}
	if len(wrt) == 0 {
		return nil
	}
	var one T = 1 // the loss's gradient: the backward pass starts there (ops.PlanHolds)
	b.dloss = G.NodeFromAny(b.g, one, G.WithName("dloss"))
	grads, err := G.Backpropagate(G.Nodes{b.loss}, G.Nodes{b.dloss}, wrt)
	if err != nil {
		return fmt.Errorf("model: backward: %w", err)
	}
	for i, name := range names {
		b.grads[name] = grads[i]
	}
	return nil
}

// attnLayout is the batch as the attention ops see it.
func (b *builder[T]) attnLayout() ops.Layout {
	return ops.Layout{B: b.lay.B, N: b.lay.N, Lens: b.lay.lens, Heads: b.cfg.Text.NumHeads, HeadDim: b.cfg.HeadDim(),
		Products: b.opt.Products}
}

// flexPlan gathers what a FlexAttention layer needs: HR rows, HR RoPE tables per image sample, α.
func (b *builder[T]) flexPlan() *ops.FlexPlan {
	_, _, zg, M := b.cfg.Grid()
	cos, sin := b.hrRope()
	return &ops.FlexPlan{Layout: b.attnLayout(), Alpha: b.opt.Alpha, Rows: b.rows, M: M, Dense: b.dense, Products: b.opt.Products,
		Cells: ops.CellGrid{G: b.cfg.Flex.SelectGrid, Zg: zg}, RopeCos: cos, RopeSin: sin}
}

// hrRope returns the HR RoPE tables of every sample with HR rows (nil for the others), computed once per
// graph and image offset: they depend on the offset only, not on the layer, and samples whose images start
// at the same row (the usual case: one prompt template) share them.
func (b *builder[T]) hrRope() (cos, sin [][]float64) {
	if b.ropeCos != nil {
		return b.ropeCos, b.ropeSin
	}
	g, _, zg, _ := b.cfg.Grid()
	dh := b.cfg.HeadDim()
	c, s := b.ropeTables()
	b.ropeCos, b.ropeSin = make([][]float64, b.lay.B), make([][]float64, b.lay.B)
	first := map[int]int{} // image offset → the first sample with it
	for i, at := range b.lay.imageAt {
		if at < 0 || len(b.rows[i]) == 0 {
			continue
		}
		if j, ok := first[at]; ok {
			b.ropeCos[i], b.ropeSin[i] = b.ropeCos[j], b.ropeSin[j]
			continue
		}
		first[at] = i
		b.ropeCos[i], b.ropeSin[i] = hrRopeTables(b.mem, c, s, at, g, zg, dh)
	}
	return b.ropeCos, b.ropeSin
}

// ropeTables returns the RoPE tables of the batch's positions [N, dh], computed once per graph.
func (b *builder[T]) ropeTables() (cos, sin []float64) {
	if b.textCos == nil {
		b.textCos, b.textSin = ops.RopeTables(b.lay.N, b.cfg.HeadDim(), b.cfg.Text.RopeTheta)
	}
	return b.textCos, b.textSin
}

// selectPlan gathers what the selection in layer l needs.
func (b *builder[T]) selectPlan(l int) *ops.SelectPlan {
	g, _, _, _ := b.cfg.Grid()
	f := b.cfg.Flex
	plan := &ops.SelectPlan{Layout: b.attnLayout(), Rows: b.rows, ImageAt: b.lay.imageAt, OriSizes: b.oriSizes, Boxes: b.boxes,
		Grid: g, Cells: f.SelectGrid, Threshold: f.Threshold, Strategy: f.Strategy, Ratio: f.Ratio,
		Seed: b.opt.Seed, Step: b.opt.Step, Layer: l}
	if l == f.NSA-1 {
		plan.Attention = b.frontAttn // kept with the front when it is cached
	}
	return plan
}
