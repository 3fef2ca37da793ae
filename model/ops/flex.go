// FlexAttention (docs/DESIGN.md §7): a decoder layer's plain attention, plus, for each HR row of an image sample
// that selected some HR tokens (docs/DESIGN.md §8), a second softmax over the row's plain keys and those tokens'
// keys, blended into the row's output with weight α. AttendRow below is the math of one row written plainly,
// the reference the rest is read against (decoding runs it).
//
// The op computes the plain part with plain attention's kernels and cache (attention.go) and each sample's
// HR part in one of two forms, over the union of the HR tokens selected by some row of the sample: the union
// form (flex_union.go), which training runs, and the dense form (flex_dense.go), the official
// implementation's cost, kept as the oracle of the union form and the bench baseline. This file holds what
// the forms share: the plan, the op, the union with its projected keys, and the HR weights' gradients.

package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
)

// FlexPlan is what a FlexAttention layer needs beside its tensors (docs/DESIGN.md §7): the HR rows of each sample,
// the HR RoPE tables of each image sample and α. It also receives the layer's selection when the layer runs.
type FlexPlan struct {
	Layout
	Alpha float64
	Rows  [][]int // per sample, the HR rows in increasing order; nil for text-only samples
	// RopeCos and RopeSin are per sample [M, dh] tables for the HR keys (nil for text-only samples).
	RopeCos, RopeSin [][]float64
	M                int // HR tokens per image (M_all)
	Cells            CellGrid
	// Dense projects all M HR tokens and scores them for every row of an image sample, masking what a row
	// did not select: the same numbers at the cost of the official implementation (a benchmark baseline).
	Dense bool
	// Products is the precision of the HR projections hd·W'_Kᵀ and hd·W'_Vᵀ and of their weights'
	// gradients: with BF16 (float32 only) the HR features and W'_K, W'_V are rounded to bfloat16, and so are
	// the upstream gradients of the weight gradients' products that the form makes (dk_hr before RoPE;
	// dv_hr in the dense form; the union form's dW'_V = α·gᵀ·(P·hd) multiplies float32 values of rounded
	// features, as a GPU's sum of rounded products in float32 does).
	Products Precision
}

// CellGrid maps selection cells to HR tokens: HR token (R, C) of the Zg×Zg grid belongs to cell
// (⌊R·G/Zg⌋, ⌊C·G/Zg⌋) of the G×G grid (docs/DESIGN.md §8 step 6).
type CellGrid struct{ G, Zg int }

// Cell is the index of the cell, row-major, that covers HR token (R, C): nearest up-sampling (docs/DESIGN.md §8).
func (c CellGrid) Cell(R, C int) int { return R*c.G/c.Zg*c.G + C*c.G/c.Zg }

// Tokens returns the HR tokens of the selected cells (cells is G² flags, row-major), in increasing order:
// along each HR row, the column spans of its selected cells.
func (c CellGrid) Tokens(cells func(i int) bool) []int {
	var out []int
	for R := 0; R < c.Zg; R++ {
		row := R * c.G / c.Zg * c.G
		for col := 0; col < c.G; col++ {
			if cells(row + col) {
				for C := c.firstColumn(col); C < c.firstColumn(col+1); C++ {
					out = append(out, R*c.Zg+C)
				}
			}
		}
	}
	return out
}

// firstColumn is the first HR column of cell column col (Zg for col = G): the least C with ⌊C·G/Zg⌋ ≥ col.
func (c CellGrid) firstColumn(col int) int { return (col*c.Zg + c.G - 1) / c.G }

// AttendRow is one FlexAttention row (docs/DESIGN.md §7), the reference in plain Go; decoding runs it for each new
// token. For each of the heads of q [H·dh], with the n plain keys and values k, v [n, H·dh] the row sees and
// the m HR keys and values kHR, vHR [m, H·dh] it selected (rotated keys; none for a row without a selection):
// the LR scores s = q·kᵀ/√dh, the selected HR scores s_hr = q·k_hrᵀ/√dh, then
//
//	out = P·V                                with P = softmax(s) over the plain keys alone, when m = 0;
//	out = (1−α)·P·V + α·P_sel·[V; V_hr]      with P_sel = softmax([s; s_hr]) jointly, when m > 0.
//
// probs, when not nil, receives P [H, n] (the next layer's selection reads it).
func AttendRow[T Float](out, q, k, v []T, heads int, kHR, vHR []T, alpha float64, probs []T) {
	width := len(q)
	dh, n, m := width/heads, len(k)/width, len(kHR)/width
	s := make([]T, n+m) // one head's scores: [LR; selected HR]
	clear(out)
	for h := 0; h < heads; h++ {
		qh, oh, at := q[h*dh:(h+1)*dh], out[h*dh:(h+1)*dh], h*dh
		rowScores(s[:n], qh, k, width, at)   // its LR scores
		rowScores(s[n:], qh, kHR, width, at) // its selected HR scores
		joint := append([]T(nil), s...)
		softmax(s[:n]) // P, over the plain keys alone
		if probs != nil {
			copy(probs[h*n:(h+1)*n], s[:n])
		}
		rowMix(oh, s[:n], v, width, at) // out = P·V
		if m > 0 {
			softmax(joint) // P_sel, over the plain keys and the selected HR keys together
			blendRow(oh, joint, v, vHR, width, at, T(alpha))
		}
	}
}

// rowScores sets s_j = q·x_j/√dh (dh = len(q)) for the first len(s) rows x_j of x [·, width], at the
// columns [at, at+dh).
func rowScores[T Float](s, q, x []T, width, at int) {
	scale := 1 / math.Sqrt(float64(len(q)))
	for j := range s {
		s[j] = T(scale * dot(q, x[j*width+at:][:len(q)]))
	}
}

// rowMix adds Σ_j p_j·x_j to o, x_j the columns [at, at+len(o)) of row j of x [·, width].
func rowMix[T Float](o, p, x []T, width, at int) {
	for j, pj := range p {
		axpy(o, pj, x[j*width+at:][:len(o)])
	}
}

// blendRow sets o = (1−α)·o + α·P_sel·[V; V_hr] for one head's joint probabilities p = P_sel over the
// rows of v and then of vHR.
func blendRow[T Float](o, p, v, vHR []T, width, at int, alpha T) {
	n := len(v) / width
	mix := make([]T, len(o))
	rowMix(mix, p[:n], v, width, at)
	rowMix(mix, p[n:], vHR, width, at)
	for d := range o {
		o[d] = (1-alpha)*o[d] + alpha*mix[d]
	}
}

// FlexAttention is the FlexAttention of docs/DESIGN.md §7 over q, k, v [B·N, D], the HR projections wk, wv
// [D, D], the HR features hd [B·M, D] (constants) and the selection cells [B·N, G²] chosen by the previous
// layer (no gradient). Only the union of the HR tokens selected by some row of a sample has its keys
// projected and scored (all M in plan's dense form), and each HR row takes values from the tokens it
// selected only. needW says whether wk and wv need gradients.
func FlexAttention(q, k, v, wk, wv, hd, cells *G.Node, plan *FlexPlan, needW bool) (*G.Node, error) {
	if err := checkPrecision("FlexAttention", plan.Products, q); err != nil {
		return nil, err
	}
	c32, c64 := newFlexCache[float32](plan), newFlexCache[float64](plan)
	op := &fnOp{name: "FlexAttention", diff: []bool{true, true, true, needW, needW, false, false}, shape: sameShape,
		do: pick(c32.forward, c64.forward), args: &FlexArgs{Plan: plan}}
	op.grad = packedGrad("FlexAttentionGrad", op.args, pick(c32.backward, c64.backward), []bool{true, true, true, needW, needW})
	return apply(op, 2, q, k, v, wk, wv, hd, cells)
}

// flexCache is what a FlexAttention op's forward pass keeps for its backward pass: the plain part's cache,
// each row's log-sum-exp of its plain scores, and each sample's HR part in the plan's form.
type flexCache[T Float] struct {
	plainCache[T]
	plan   *FlexPlan
	lse    []T         // [B, H, N]
	hr     []hrRows[T] // per sample: a *unionCache or a *denseCache; nil where no row selected a token
	wk, wv []T         // W'_K and W'_V rounded to bfloat16 (Products BF16), for both passes; nil otherwise
}

// newFlexCache is the empty cache of a FlexAttention op over plan, filled by each forward pass.
func newFlexCache[T Float](plan *FlexPlan) *flexCache[T] {
	return &flexCache[T]{plainCache: plainCache[T]{lay: plan.Layout}, plan: plan}
}

// hrRows is one sample's HR part in one form, as its forward pass left it for the backward pass.
type hrRows[T Float] interface {
	// plainTerms adjusts w, the weight of each row's P_plain·v in the output at head h (1 as plain attention
	// has it), and returns the shift of each row's plain softmax backward (nil for none); g is the upstream
	// gradient.
	plainTerms(h int, g []T, w []float64) []float64
	// backward adds the HR part's gradients into t's dq, dk and dv, and sets dwk and dwv to its HR weights'.
	backward(t *attnBack[T], dwk, dwv []T)
}

// forward is the FlexAttention op's forward pass over in = q, k, v, wk, wv, hd, cells: every row's plain
// attention, then each sample's HR rows blended in.
func (c *flexCache[T]) forward(m *Arena, in []G.Value) (G.Value, error) {
	t, lay := tensorsOf[T](in), c.lay
	if err := checkQKV(lay, t); err != nil {
		return nil, err
	}
	c.lse = Buffer[T](m, lay.B*lay.Heads*lay.N)
	out, o := c.attend(m, t, c.lse)
	if err := c.plan.check(len(t.wk), len(t.wv), len(t.hd), len(t.cells)); err != nil {
		return nil, err
	}
	if c.plan.Products == BF16 {
		c.wk, c.wv = roundedCopy(m, t.wk), roundedCopy(m, t.wv)
		t.wk, t.wv = c.wk, c.wv
	}
	c.hr = make([]hrRows[T], lay.B)
	parallel(lay.B, func(b int) { c.hr[b] = c.sample(b, t, o) })
	return out, nil
}

// check refuses FlexAttention inputs of these sizes (W'_K, W'_V, the HR features, the cells) unless they
// fit the plan.
func (p *FlexPlan) check(wk, wv, hd, cells int) error {
	width := p.Heads * p.HeadDim
	if hd != p.B*p.M*width || cells != p.B*p.N*p.Cells.G*p.Cells.G || wk != width*width || wv != width*width {
		return fmt.Errorf("ops: FlexAttention: inputs do not fit the plan (hd %d, cells %d, w %d)", hd, cells, wk)
	}
	return nil
}

// sample computes the HR part of sample b in the plan's form and blends it into o, or returns nil when no
// row of the sample selected a token.
func (c *flexCache[T]) sample(b int, t attnTensors[T], o []T) hrRows[T] {
	if c.plan.Rows[b] == nil {
		return nil
	}
	hu, blend := c.union(b, t.cells)
	if len(hu.union) == 0 {
		return nil
	}
	W := c.lay.Heads * c.lay.HeadDim
	hu.project(t.hd[b*c.plan.M*W:][:c.plan.M*W], t.wk)
	hu.qr = gatherRows(c.mem, t.q, c.lay, b, hu.rows)
	var rows hrRows[T]
	if c.plan.Dense {
		rows = denseForward(hu, blend, t.k, t.v, t.wv, o)
	} else {
		rows = unionForward(hu, c.lse, t.wv, o)
	}
	if c.plan.Products == BF16 { // the HR keys held in bfloat16 for the backward pass, as activations are (PlanHolds)
		roundInPlace(hu.kHR)
	}
	return rows
}

// hrUnion is the HR part of one sample that both forms compute on: the union of the HR tokens that some
// computed row selected (all M in the dense form), their features and rotated keys, and the computed rows
// with their selections and queries.
type hrUnion[T Float] struct {
	mem      *Arena
	plan     *FlexPlan
	b        int     // the sample
	union    []int   // HR tokens, increasing
	rows     []int   // the computed rows: HR rows with a selection (every real row in the dense form)
	sel      [][]int // per row in rows, the union positions of the tokens it selected, increasing
	qr       []T     // [R, H·dh] the rows' queries
	hdU      []T     // [U, D] the union's HR features
	kHR      []T     // [U, D] the union's rotated HR keys
	cos, sin []T     // [U, dh] the RoPE tables at the union's tokens, for the keys and their gradient
}

// dims are the heads, the computed rows, the union's size, the head size and the width H·dh.
func (hu *hrUnion[T]) dims() (H, R, U, dh, W int) {
	H, dh = hu.plan.Heads, hu.plan.HeadDim
	return H, len(hu.rows), len(hu.union), dh, H * dh
}

// union reads the selection of sample b's HR rows into its hrUnion. The dense form widens the rows to every
// real row of the sample and the union to all M tokens; blend then says which rows are HR rows with a
// selection (the union form blends every row it computes, and gets nil).
func (c *flexCache[T]) union(b int, cells []T) (hu hrUnion[T], blend []bool) {
	rows, perRow := selectedRows(c.plan, b, cells)
	all := c.plan.Dense && len(rows) > 0
	if all {
		rows, blend, perRow = widenRows(c.plan, b, rows, perRow)
	}
	hu = hrUnion[T]{mem: c.mem, plan: c.plan, b: b, rows: rows}
	union, pos := unionOf(c.plan.M, perRow, all)
	hu.union, hu.sel = union, positions(perRow, pos)
	return hu, blend
}

// selectedRows returns sample b's HR rows that selected some token, and the tokens each selected, increasing.
func selectedRows[T Float](plan *FlexPlan, b int, cells []T) (rows []int, perRow [][]int) {
	nCells := plan.Cells.G * plan.Cells.G
	for _, r := range plan.Rows[b] {
		c := cells[(b*plan.N+r)*nCells:][:nCells]
		if toks := plan.Cells.Tokens(func(i int) bool { return c[i] != 0 }); len(toks) > 0 {
			rows, perRow = append(rows, r), append(perRow, toks)
		}
	}
	return rows, perRow
}

// unionOf returns the union of the token lists perRow (all of the M tokens when all), increasing, and each
// token's position in it.
func unionOf(M int, perRow [][]int, all bool) (union, pos []int) {
	in := make([]bool, M)
	for _, toks := range perRow {
		for _, t := range toks {
			in[t] = true
		}
	}
	pos = make([]int, M)
	for t := range in {
		if in[t] || all {
			pos[t], union = len(union), append(union, t)
		}
	}
	return union, pos
}

// positions maps each token list of perRow to positions pos of its tokens.
func positions(perRow [][]int, pos []int) [][]int {
	sel := make([][]int, len(perRow))
	for i, toks := range perRow {
		sel[i] = make([]int, len(toks))
		for j, t := range toks {
			sel[i][j] = pos[t]
		}
	}
	return sel
}

// project gathers the union's HR features from the sample's hd [M, D] and sets its keys
// k_hr = rope_hr(hd·W'_Kᵀ). The values are the forms' own: the dense form projects v_hr = hd·W'_Vᵀ, the union
// form never forms it.
func (hu *hrUnion[T]) project(hd, wk []T) {
	_, _, U, _, W := hu.dims()
	m := hu.mem
	// Every element of these is written before it is read: copied, multiplied into (β = 0) or rotated.
	hu.hdU = lend[T](m, U*W, false)
	copyRows(hu.hdU, hd, hu.union, W)
	if hu.plan.Products == BF16 {
		roundInPlace(hu.hdU)
	}
	pre, kHR := get[T](m, U*W, false), lend[T](m, U*W, false)
	MatMulNT(pre, hu.hdU, wk, U, W, W)
	hu.tables()
	hu.rotate(kHR, pre, false)
	Recycle(m, pre)
	hu.kHR = kHR
}

// tables converts the sample's HR RoPE tables to T at the union's tokens, once for both passes.
func (hu *hrUnion[T]) tables() {
	dh, plan := hu.plan.HeadDim, hu.plan
	cos, sin := lend[T](hu.mem, len(hu.union)*dh, false), lend[T](hu.mem, len(hu.union)*dh, false) // every row set
	for i, t := range hu.union {
		for d := 0; d < dh; d++ {
			cos[i*dh+d], sin[i*dh+d] = T(plan.RopeCos[hu.b][t*dh+d]), T(plan.RopeSin[hu.b][t*dh+d])
		}
	}
	hu.cos, hu.sin = cos, sin
}

// rotate sets every head of each union row of dst to RoPE of src's (its adjoint when transpose), with the
// row's token's tables: the HR keys forward, their gradient back.
func (hu *hrUnion[T]) rotate(dst, src []T, transpose bool) {
	dh := hu.plan.HeadDim
	width := len(src) / len(hu.union)
	for i := range hu.union {
		ropeRow(dst[i*width:(i+1)*width], src[i*width:(i+1)*width], hu.cos[i*dh:(i+1)*dh], hu.sin[i*dh:(i+1)*dh], dh, transpose)
	}
}

// addRows adds each computed row's head-h gradient dqr [R, dh] into its row of dq [B·N, H·dh].
func (hu *hrUnion[T]) addRows(dq, dqr []T, h int) {
	_, _, _, dh, W := hu.dims()
	for i, r := range hu.rows {
		AddTo(dq[(hu.b*hu.plan.N+r)*W+h*dh:][:dh], dqr[i*dh:(i+1)*dh])
	}
}

// weightGrads sets dW'_K = ropeᵀ(dk_hr)ᵀ·hd_U and, when dvHR is given (the dense form), dW'_V = dv_hrᵀ·hd_U,
// rounding the left operands to bfloat16 first with Products BF16 (dvHR in place).
func (hu *hrUnion[T]) weightGrads(dkHR, dvHR, dwk, dwv []T) {
	_, _, U, _, W := hu.dims()
	dPre := get[T](hu.mem, U*W, false) // every row rotated into
	defer Recycle(hu.mem, dPre)
	hu.rotate(dPre, dkHR, true)
	if hu.plan.Products == BF16 {
		roundInPlace(dPre)
		roundInPlace(dvHR) // a no-op when nil
	}
	matmul(true, false, W, W, U, 1, dPre, hu.hdU, 0, dwk)
	if dvHR != nil {
		matmul(true, false, W, W, U, 1, dvHR, hu.hdU, 0, dwv)
	}
}

// copyRows copies the rows idx of x [·, D] into dst [len(idx), D], in order.
func copyRows[T Float](dst, x []T, idx []int, D int) {
	for i, r := range idx {
		copy(dst[i*D:(i+1)*D], x[r*D:(r+1)*D])
	}
}

// gatherRows copies the rows of sample b of a [B·N, H·dh] tensor into a buffer of the arena, in order.
func gatherRows[T Float](m *Arena, x []T, lay Layout, b int, rows []int) []T {
	W := lay.Heads * lay.HeadDim
	out := lend[T](m, len(rows)*W, false) // every row copied over
	copyRows(out, x[b*lay.N*W:], rows, W)
	return out
}

// backward is the FlexAttention op's backward pass: the packed gradients [dq; dk; dv; dW'_K; dW'_V] from
// in = q, k, v, wk, wv, hd, cells, g.
func (c *flexCache[T]) backward(m *Arena, in []G.Value) (G.Value, error) {
	W := c.lay.Heads * c.lay.HeadDim
	t, err := c.backPass(m, in, 2*W*W)
	if err != nil {
		return nil, err
	}
	if c.wk != nil {
		t.wk, t.wv = c.wk, c.wv
	}
	// Samples own disjoint rows of dq, dk, dv; their HR weight gradients are summed in sample order after.
	dws := make([][]T, c.lay.B)
	parallel(c.lay.B, func(b int) {
		for h := 0; h < c.lay.Heads; h++ {
			w, shift := c.plainTerms(b, h, t.g)
			c.headBackward(m, t, b, h, w, shift)
			Recycle(m, w, shift)
		}
		dws[b] = c.hrBackward(m, t, b)
	})
	sumSamples(m, t.dw, dws)
	return t.out, nil
}

// plainTerms are, per row of sample b at head h, the weight c_r of P_plain·v in the output and the shift
// its softmax backward subtracts beyond its own Σ P·dp: c = 1 and none, as plain attention has them, unless
// the sample's HR part adjusts them (unionCache.plainTerms, denseCache.plainTerms).
func (c *flexCache[T]) plainTerms(b, h int, g []T) (w, shift []float64) {
	w = c.rowWeights()
	if c.hr[b] != nil {
		shift = c.hr[b].plainTerms(h, g, w)
	}
	return w, shift
}

// hrBackward backpropagates sample b's HR part into t and returns its HR weights' gradients [dW'_K; dW'_V]
// (nil for a sample without one).
func (c *flexCache[T]) hrBackward(m *Arena, t *attnBack[T], b int) []T {
	if c.hr[b] == nil {
		return nil
	}
	W := c.lay.Heads * c.lay.HeadDim
	dw := get[T](m, 2*W*W, false) // set whole by the form's backward
	c.hr[b].backward(t, dw[:W*W], dw[W*W:])
	return dw
}

// sumSamples adds the samples' HR weight gradients dws (nil where none) into dw, each element in sample order
// whatever the cut, and gives them back to m.
func sumSamples[T Float](m *Arena, dw []T, dws [][]T) {
	parallelRange(len(dw), grain, func(lo, hi int) {
		for _, d := range dws {
			if d != nil {
				AddTo(dw[lo:hi], d[lo:hi])
			}
		}
	})
	for _, d := range dws {
		Recycle(m, d)
	}
}
