package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Layout describes a right-padded batch folded into rows: sample b owns rows [b·N, (b+1)·N), of which the
// first Lens[b] are real. Every attention row r sees the keys j ≤ r with j < Lens[b] (causal and padding
// mask), so padded rows see the real keys and no row is empty. With Full set every row sees all the real
// keys of its sample (the non-causal attention of the vision tower).
type Layout struct {
	B, N    int
	Lens    []int
	Heads   int
	HeadDim int
	Full    bool
}

// keys is the number of keys row r of sample b sees.
func (l Layout) keys(b, r int) int {
	if l.Full {
		return l.Lens[b]
	}
	return min(r+1, l.Lens[b])
}

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

// Attention is plain multi-head attention over q, k, v [B·N, H·dh] (q and k already rotated): causal, or
// non-causal when lay.Full is set.
func Attention(q, k, v *G.Node, lay Layout) (*G.Node, error) {
	st := &attnState{lay: lay}
	op := &fnOp{name: "Attention", diff: []bool{true, true, true}, shape: sameShape}
	op.do = pick(func(m *Arena, in []G.Value) (G.Value, error) { return attnForward[float32](m, st, in, nil) },
		func(m *Arena, in []G.Value) (G.Value, error) { return attnForward[float64](m, st, in, nil) })
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		sizes := []tensor.Shape{in[0].Shape(), in[1].Shape(), in[2].Shape()}
		back := &fnOp{name: "AttentionGrad", shape: packedShape(sizes)}
		back.do = pick(func(m *Arena, v []G.Value) (G.Value, error) { return attnBackward[float32](m, st, v) },
			func(m *Arena, v []G.Value) (G.Value, error) { return attnBackward[float64](m, st, v) })
		packed, err := apply(back, 1, in[0], in[1], in[2], g)
		if err != nil {
			return nil, err
		}
		return unpackAll(packed, sizes, []bool{true, true, true})
	}
	return apply(op, 2, q, k, v)
}

// FlexAttention is the FlexAttention of docs/DESIGN.md §7 over q, k, v [B·N, D], the HR projections wk, wv
// [D, D], the HR features hd [B·M, D] (constants) and the selection cells [B·N, G²] chosen by the previous
// layer (no gradient). Only the union of the HR tokens selected by some row of a sample has its keys
// projected and scored (docs/DESIGN.md §11), and each HR row takes values from the tokens it selected only. needW says whether wk
// and wv need gradients.
func FlexAttention(q, k, v, wk, wv, hd, cells *G.Node, plan *FlexPlan, needW bool) (*G.Node, error) {
	st := &attnState{lay: plan.Layout, plan: plan}
	op := &fnOp{name: "FlexAttention", diff: []bool{true, true, true, needW, needW, false, false}, shape: sameShape}
	op.do = pick(func(m *Arena, in []G.Value) (G.Value, error) { return attnForward[float32](m, st, in[:3], in[3:]) },
		func(m *Arena, in []G.Value) (G.Value, error) { return attnForward[float64](m, st, in[:3], in[3:]) })
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		sizes := []tensor.Shape{in[0].Shape(), in[1].Shape(), in[2].Shape(), in[3].Shape(), in[4].Shape()}
		back := &fnOp{name: "FlexAttentionGrad", shape: packedShape(sizes)}
		back.do = pick(func(m *Arena, v []G.Value) (G.Value, error) { return attnBackward[float32](m, st, v) },
			func(m *Arena, v []G.Value) (G.Value, error) { return attnBackward[float64](m, st, v) })
		packed, err := apply(back, 1, in[0], in[1], in[2], in[3], in[4], in[5], in[6], g)
		if err != nil {
			return nil, err
		}
		grads, err := unpackAll(packed, sizes, []bool{true, true, true, needW, needW})
		return append(grads, nil, nil), err
	}
	return apply(op, 2, q, k, v, wk, wv, hd, cells)
}

// attnState carries what the forward pass leaves for the backward pass of one attention op.
type attnState struct {
	mem  *Arena // the op's arena: scratch and the state below live as long as the graph's values
	lay  Layout
	plan *FlexPlan
	p    any       // []T: plain probabilities [B, H, N, N]
	lse  any       // []T: log-sum-exp of each row's plain scores [B, H, N], FlexAttention only
	hr   []hrCache // per sample, FlexAttention only
}

// hrCache is one sample's HR part: the union of the selected HR tokens, their keys (and values in the dense
// form), and for each computed row its mask over the union and its second softmax: over the union only in the
// union form (pSel [H, R, U], with beta, oPlain, z and y), over the plain keys and the union in the dense form.
type hrCache struct {
	union  []int   // HR tokens selected by some row (all M when dense), increasing
	rows   []int   // rows with a second softmax: HR rows with a selection (every real row when dense)
	blend  []bool  // per row in rows: whether its output is blended (an HR row with a selection)
	sel    [][]int // per row in rows, the union positions of the tokens the row selected, increasing
	qr     any     // []T [R, H·dh] the rows' queries
	hdU    any     // []T [U, D] gathered HR features
	kHR    any     // []T [U, D] rotated HR keys
	cos    any     // []T [U, dh] the RoPE tables at the union's tokens, for the keys and their gradient
	sin    any     // []T [U, dh]
	vHR    any     // []T [U, D] HR values (dense form)
	pSel   any     // []T second-softmax probabilities: [H, R, U] (union form) or [H, R, L+U] (dense form)
	beta   any     // []T [H, R] the plain keys' share of each row's second softmax (union form)
	oPlain any     // []T [R, H·dh] the rows' plain outputs before the blend (union form)
	z      any     // []T [R, H, D] each row's second-softmax mean of its selected HR features, P_hr·hd (union form)
	y      any     // []T [H, R, dh] the HR part of each row's second softmax, P_hr·v_hr = z·W'_Vᵀ (union form)
}

func attnForward[T Float](m *Arena, st *attnState, qkv, flex []G.Value) (G.Value, error) {
	lay := st.lay
	q, k, v := slice[T](qkv[0]), slice[T](qkv[1]), slice[T](qkv[2])
	width := lay.Heads * lay.HeadDim
	if len(q) != lay.B*lay.N*width || len(k) != len(q) || len(v) != len(q) {
		return nil, fmt.Errorf("ops: attention: got %d values, layout wants %d", len(q), lay.B*lay.N*width)
	}
	st.mem = m
	out, o := alloc[T](m, lay.B*lay.N, width)
	p := lend[T](m, lay.B*lay.Heads*lay.N*lay.N, false) // every element written (plainForward)
	var lse []T
	if flex != nil {
		lse = Buffer[T](m, lay.B*lay.Heads*lay.N)
	}
	st.p, st.lse = p, lse
	parallel(lay.B, func(b int) {
		for h := 0; h < lay.Heads; h++ {
			plainForward(lay, b, h, q, k, v, p, lse, o)
		}
	})
	if flex != nil {
		if err := flexForward(st, q, k, v, flex, o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// headAt returns the view of a [B·N, H·dh] tensor at sample b, head h: rows of stride H·dh.
func headAt[T Float](x []T, lay Layout, b, h int) []T {
	return x[b*lay.N*lay.Heads*lay.HeadDim+h*lay.HeadDim:]
}

// plainForward computes, for sample b and head h, P = softmax(q kᵀ/√dh + mask) into p and P·v into o, and
// each row's log-sum-exp of the scores into lse unless it is nil.
func plainForward[T Float](lay Layout, b, h int, q, k, v, p, lse, o []T) {
	N, L, dh, W := lay.N, lay.Lens[b], lay.HeadDim, lay.Heads*lay.HeadDim
	P := p[(b*lay.Heads+h)*N*N:][:N*N]
	if L == 0 {
		clear(P)
		return
	}
	matmulLD(false, true, N, L, dh, T(1/math.Sqrt(float64(dh))), headAt(q, lay, b, h), W, headAt(k, lay, b, h), W, 0, P, N)
	for r := 0; r < N; r++ {
		nk := lay.keys(b, r)
		mx, sum := softmaxSum(P[r*N : r*N+nk])
		if lse != nil {
			lse[(b*lay.Heads+h)*N+r] = T(float64(mx) + math.Log(sum))
		}
		clear(P[r*N+nk : (r+1)*N])
	}
	matmulLD(false, false, N, dh, L, 1, P, N, headAt(v, lay, b, h), W, 0, headAt(o, lay, b, h), W)
}

// flexForward blends the second softmax of every HR row into o: (1−α)·P_plain·v + α·P_sel·[v; v_hr].
func flexForward[T Float](st *attnState, q, k, v []T, flex []G.Value, o []T) error {
	plan, lay := st.plan, st.lay
	wk, wv, hd, cells := slice[T](flex[0]), slice[T](flex[1]), slice[T](flex[2]), slice[T](flex[3])
	width := lay.Heads * lay.HeadDim
	nCells := plan.Cells.G * plan.Cells.G
	if len(hd) != lay.B*plan.M*width || len(cells) != lay.B*lay.N*nCells || len(wk) != width*width || len(wv) != width*width {
		return fmt.Errorf("ops: FlexAttention: inputs do not fit the plan (hd %d, cells %d, w %d)", len(hd), len(cells), len(wk))
	}
	st.hr = make([]hrCache, lay.B)
	parallel(lay.B, func(b int) {
		if plan.Rows[b] == nil {
			return
		}
		hc := selectUnion(plan, b, cells)
		if len(hc.union) == 0 {
			return
		}
		projectHR[T](st.mem, &hc, plan, b, hd[b*plan.M*width:][:plan.M*width], wk, wv, width)
		if plan.Dense {
			denseRowsForward(st, &hc, b, q, k, v, o)
		} else {
			hrRowsForward(st, &hc, b, q, wv, o)
		}
		st.hr[b] = hc
	})
	return nil
}

// selectUnion reads the selection of sample b's HR rows and builds the union and the per-row masks.
func selectUnion[T Float](plan *FlexPlan, b int, cells []T) hrCache {
	nCells := plan.Cells.G * plan.Cells.G
	var hc hrCache
	inUnion := make([]bool, plan.M)
	var perRow [][]int
	for _, r := range plan.Rows[b] {
		c := cells[(b*plan.N+r)*nCells:][:nCells]
		toks := plan.Cells.Tokens(func(i int) bool { return c[i] != 0 })
		if len(toks) == 0 {
			continue
		}
		hc.rows, hc.blend, perRow = append(hc.rows, r), append(hc.blend, true), append(perRow, toks)
		for _, t := range toks {
			inUnion[t] = true
		}
	}
	if plan.Dense && len(hc.rows) > 0 {
		hc.rows, hc.blend, perRow = denseRows(plan, b, hc.rows, perRow)
		for t := range inUnion {
			inUnion[t] = true
		}
	}
	pos := make([]int, plan.M)
	for t, in := range inUnion {
		if in {
			pos[t] = len(hc.union)
			hc.union = append(hc.union, t)
		}
	}
	hc.sel = make([][]int, len(perRow))
	for i, toks := range perRow {
		hc.sel[i] = make([]int, len(toks))
		for j, t := range toks {
			hc.sel[i][j] = pos[t]
		}
	}
	return hc
}

// denseRows widens the computed rows to every real row of sample b, as the official implementation
// computes both softmaxes for all of them; only the HR rows with a selection are blended.
func denseRows(plan *FlexPlan, b int, rows []int, perRow [][]int) ([]int, []bool, [][]int) {
	sel := map[int][]int{}
	for i, r := range rows {
		sel[r] = perRow[i]
	}
	var all []int
	var blend []bool
	var toks [][]int
	for r := 0; r < plan.Lens[b]; r++ {
		all, blend, toks = append(all, r), append(blend, sel[r] != nil), append(toks, sel[r])
	}
	return all, blend, toks
}

// projectHR gathers the union's HR features and projects them: k_hr = rope_hr(hd·W'_Kᵀ) and, in the dense
// form, v_hr = hd·W'_Vᵀ. The union form never forms v_hr: a row's HR output is (P_hr·hd)·W'_Vᵀ over the
// tokens it selected, which costs less than projecting the whole union.
func projectHR[T Float](m *Arena, hc *hrCache, plan *FlexPlan, b int, hd, wk, wv []T, width int) {
	U, dh := len(hc.union), plan.HeadDim
	// Every element of these is written before it is read: copied, multiplied into (β = 0) or rotated.
	hdU := lend[T](m, U*width, false)
	copyRows(hdU, hd, hc.union, width)
	pre, kHR := get[T](m, U*width, false), lend[T](m, U*width, false)
	MatMulNT(pre, hdU, wk, U, width, width)
	if plan.Dense {
		vHR := lend[T](m, U*width, false)
		MatMulNT(vHR, hdU, wv, U, width, width)
		hc.vHR = vHR
	}
	unionTables[T](m, plan, hc, b)
	rotateUnion(kHR, pre, hc, dh, false)
	Recycle(m, pre)
	hc.hdU, hc.kHR = hdU, kHR
}

// unionTables converts sample b's HR RoPE tables to T at the union's tokens, once for both passes.
func unionTables[T Float](m *Arena, plan *FlexPlan, hc *hrCache, b int) {
	dh := plan.HeadDim
	cos, sin := lend[T](m, len(hc.union)*dh, false), lend[T](m, len(hc.union)*dh, false) // every row set
	for i, t := range hc.union {
		for d := 0; d < dh; d++ {
			cos[i*dh+d], sin[i*dh+d] = T(plan.RopeCos[b][t*dh+d]), T(plan.RopeSin[b][t*dh+d])
		}
	}
	hc.cos, hc.sin = cos, sin
}

// rotateUnion sets every head of each union row of dst to RoPE of src's (its adjoint when transpose), with
// the row's token's tables: the HR keys forward, their gradient back.
func rotateUnion[T Float](dst, src []T, hc *hrCache, dh int, transpose bool) {
	cos, sin := hc.cos.([]T), hc.sin.([]T)
	width := len(src) / len(hc.union)
	for i := range hc.union {
		ropeRow(dst[i*width:(i+1)*width], src[i*width:(i+1)*width], cos[i*dh:(i+1)*dh], sin[i*dh:(i+1)*dh], dh, transpose)
	}
}

// hrRowsForward blends each selecting row's second softmax (docs/DESIGN.md §7, §11) into o. That softmax shares its
// plain scores with the first, so its plain part is the first's probabilities scaled by β = e^lse/Z, and
// only the union's scores are computed: out = (1−α+α·β)·o_plain + α·P_hr·v_hr. Its HR part is taken as
// z·W'_Vᵀ with z = P_hr·hd over the row's own selected tokens (all heads at once), not from the union's values.
func hrRowsForward[T Float](st *attnState, hc *hrCache, b int, q, wv, o []T) {
	lay, alpha := st.lay, T(st.plan.Alpha)
	H, R, U, dh, W := lay.Heads, len(hc.rows), len(hc.union), lay.HeadDim, lay.Heads*lay.HeadDim
	qr, oPlain := gatherRows(st.mem, q, lay, b, hc.rows), gatherRows(st.mem, o, lay, b, hc.rows)
	kHR, lse := hc.kHR.([]T), st.lse.([]T)
	// Every element of these is written below before it is read.
	pHR, beta := lend[T](st.mem, H*R*U, false), lend[T](st.mem, H*R, false)
	z, y, buf := lend[T](st.mem, R*H*W, false), lend[T](st.mem, H*R*dh, false), get[T](st.mem, U, false)
	defer Recycle(st.mem, buf)
	scale := T(1 / math.Sqrt(float64(dh)))
	for h := 0; h < H; h++ {
		S := pHR[h*R*U:][:R*U]
		matmulLD(false, true, R, U, dh, scale, qr[h*dh:], W, kHR[h*dh:], W, 0, S, U)
		for i, r := range hc.rows {
			beta[h*R+i] = joinSoftmax(S[i*U:(i+1)*U], hc.sel[i], lse[(b*H+h)*lay.N+r], buf)
		}
	}
	selectedMeans(st.mem, hc, pHR, H, W, z)
	for h := 0; h < H; h++ {
		Y := y[h*R*dh:][:R*dh]
		matmulLD(false, true, R, dh, W, 1, z[h*W:], H*W, wv[h*dh*W:], W, 0, Y, dh)
		for i, r := range hc.rows {
			or, c := o[(b*lay.N+r)*W+h*dh:][:dh], 1-alpha+alpha*beta[h*R+i]
			for d := range or {
				or[d] = c*or[d] + alpha*Y[i*dh+d]
			}
		}
	}
	hc.qr, hc.oPlain, hc.pSel, hc.beta, hc.z, hc.y = qr, oPlain, pHR, beta, z, y
}

// selectedMeans sets z_i = P_i·hd_sel(i) [H, D] for every row i of hc: its second-softmax probabilities over
// the tokens it selected, every head at once, times those tokens' HR features.
func selectedMeans[T Float](m *Arena, hc *hrCache, pHR []T, H, D int, z []T) {
	R, U, most := len(hc.rows), len(hc.union), hc.mostSelected()
	hdU, vector := hc.hdU.([]T), selectedVector[T](H, D)
	// Every row's part of these is written before it is read; xs holds its gathered rows for the GEMM path.
	ps, xs := get[T](m, H*most, false), gemmGather[T](m, vector, most*D)
	defer Recycle(m, xs, ps)
	for i, sel := range hc.sel {
		k := len(sel)
		p := ps[:H*k]
		hs, js := k, 1 // p is [H, k], or [k, H] for the vector kernel
		if vector {
			hs, js = 1, H
		}
		for h := 0; h < H; h++ {
			row := pHR[(h*R+i)*U:][:U]
			for j, u := range sel {
				p[h*hs+j*js] = row[u]
			}
		}
		if vector {
			meansVector(z[i*H*D:][:H*D], p, hdU, sel, D)
			continue
		}
		x := xs[:k*D]
		copyRows(x, hdU, sel, D)
		matmul(false, false, H, D, k, 1, p, x, 0, z[i*H*D:][:H*D])
	}
}

// gemmGather is the buffer of n values the per-row GEMMs gather a row's selected features into, or nil
// when the vector kernels read them in place.
func gemmGather[T Float](m *Arena, vector bool, n int) []T {
	if vector {
		return nil
	}
	return get[T](m, n, false)
}

// mostSelected is the largest number of tokens a row of hc selected.
func (hc *hrCache) mostSelected() int {
	most := 0
	for _, sel := range hc.sel {
		most = max(most, len(sel))
	}
	return most
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

// joinSoftmax turns a row's union scores s into their probabilities in the row's second softmax, whose plain
// keys have log-sum-exp lse, and returns the plain keys' share β of it. Only the positions sel are computed
// (in buf); the others get 0.
func joinSoftmax[T Float](s []T, sel []int, lse T, buf []T) T {
	m, e := lse, buf[:len(sel)]
	for j, u := range sel {
		e[j] = s[u]
		m = max(m, s[u])
	}
	expShifted(e, m)
	a := math.Exp(float64(lse - m))
	z := a
	for _, x := range e {
		z += float64(x)
	}
	inv := T(1 / z)
	clear(s)
	for j, u := range sel {
		s[u] = e[j] * inv
	}
	return T(a / z)
}

// denseRowsForward computes the second softmax of the rows of hc over [plain keys; union] and blends it into
// o, as the official implementation does (the dense form).
func denseRowsForward[T Float](st *attnState, hc *hrCache, b int, q, k, v, o []T) {
	lay, alpha := st.lay, T(st.plan.Alpha)
	R, U, L, dh, W := len(hc.rows), len(hc.union), lay.Lens[b], lay.HeadDim, lay.Heads*lay.HeadDim
	qr := gatherRows(st.mem, q, lay, b, hc.rows)
	kHR, vHR := hc.kHR.([]T), hc.vHR.([]T)
	pSel := Buffer[T](st.mem, lay.Heads*R*(L+U))
	sel := Scratch[T](st.mem, R*dh)
	defer Recycle(st.mem, sel)
	scale := T(1 / math.Sqrt(float64(dh)))
	for h := 0; h < lay.Heads; h++ {
		S := pSel[h*R*(L+U):][:R*(L+U)]
		matmulLD(false, true, R, L, dh, scale, qr[h*dh:], W, headAt(k, lay, b, h), W, 0, S, L+U)
		matmulLD(false, true, R, U, dh, scale, qr[h*dh:], W, kHR[h*dh:], W, 0, S[L:], L+U)
		for i, r := range hc.rows {
			maskedSoftmax(S[i*(L+U):(i+1)*(L+U)], lay.keys(b, r), L, hc.sel[i])
		}
		matmulLD(false, false, R, dh, L, 1, S, L+U, headAt(v, lay, b, h), W, 0, sel, dh)
		matmulLD(false, false, R, dh, U, 1, S[L:], L+U, vHR[h*dh:], W, 1, sel, dh)
		for i, r := range hc.rows {
			if !hc.blend[i] {
				continue
			}
			or := o[(b*lay.N+r)*W+h*dh:][:dh]
			for d := range or {
				or[d] = (1-alpha)*or[d] + alpha*sel[i*dh+d]
			}
		}
	}
	hc.qr, hc.pSel = qr, pSel
}

// maskedSoftmax normalises one row of [L plain keys; union] scores, of which the row sees the first nk plain
// keys and the union positions sel.
func maskedSoftmax[T Float](row []T, nk, L int, sel []int) {
	inf, next := T(math.Inf(-1)), 0
	for j := nk; j < L; j++ {
		row[j] = inf
	}
	for u := range row[L:] {
		if next < len(sel) && sel[next] == u {
			next++
			continue
		}
		row[L+u] = inf
	}
	softmax(row)
}

// attnBackward returns the packed gradients [dq; dk; dv] (plus [dW'_K; dW'_V] for FlexAttention) from the
// inputs q, k, v, …, and the upstream gradient last.
func attnBackward[T Float](m *Arena, st *attnState, in []G.Value) (G.Value, error) {
	q, k, v, g := slice[T](in[0]), slice[T](in[1]), slice[T](in[2]), slice[T](in[len(in)-1])
	lay := st.lay
	width := lay.Heads * lay.HeadDim
	size := 3 * len(q)
	var wv []T
	if st.plan != nil {
		size += 2 * width * width
		wv = slice[T](in[4])
	}
	out, packed := alloc[T](m, size)
	dq, dk, dv := packed[:len(q)], packed[len(q):2*len(q)], packed[2*len(q):3*len(q)]
	p, _ := st.p.([]T)
	if p == nil {
		return nil, fmt.Errorf("ops: attention backward ran before its forward pass")
	}
	// Samples own disjoint rows of dq, dk, dv; their HR weight gradients are summed in sample order after.
	dws := make([][]T, lay.B)
	parallel(lay.B, func(b int) {
		for h := 0; h < lay.Heads; h++ {
			c, shift := plainTerms(st, b, h, g)
			plainBackward(m, lay, b, h, q, k, v, p, g, c, shift, dq, dk, dv)
			Recycle(m, c, shift)
		}
		if st.plan == nil || len(st.hr[b].rows) == 0 {
			return
		}
		dws[b] = get[T](m, 2*width*width, false) // set whole by hrWeightGrads
		dwk, dwv := dws[b][:width*width], dws[b][width*width:]
		if st.plan.Dense {
			denseRowsBackward(st, &st.hr[b], b, k, v, g, dq, dk, dv, dwk, dwv)
		} else {
			hrRowsBackward(st, &st.hr[b], b, g, wv, dq, dwk, dwv)
		}
	})
	dw := packed[3*len(q):]
	parallelRange(len(dw), grain, func(lo, hi int) { // each element summed in sample order, whatever the cut
		for _, d := range dws {
			if d != nil {
				AddTo(dw[lo:hi], d[lo:hi])
			}
		}
	})
	for _, d := range dws {
		Recycle(m, d)
	}
	return out, nil
}

// plainTerms are, per row of sample b at head h, the weight c_r of P_plain·v in the output and the shift
// that row's softmax backward subtracts beyond its own Σ P·dp. Without FlexAttention c = 1, no shift. In the
// dense form c = 1−α on blended rows, whose second softmax goes back apart. In the union form a selecting
// row's second softmax shares the plain scores, so c = 1−α+α·β and shift = α·β·g·(y − (1−β)·o_plain).
func plainTerms[T Float](st *attnState, b, h int, g []T) (c, shift []float64) {
	c = get[float64](st.mem, st.lay.N, false)
	for r := range c {
		c[r] = 1
	}
	if st.plan == nil || st.hr == nil {
		return c, nil
	}
	hc, alpha := st.hr[b], st.plan.Alpha
	if st.plan.Dense {
		for i, r := range hc.rows {
			if hc.blend[i] {
				c[r] = 1 - alpha
			}
		}
		return c, nil
	}
	if len(hc.rows) == 0 {
		return c, nil
	}
	shift = Scratch[float64](st.mem, st.lay.N)
	R, dh, W := len(hc.rows), st.lay.HeadDim, st.lay.Heads*st.lay.HeadDim
	beta, oPlain, y := hc.beta.([]T), hc.oPlain.([]T), hc.y.([]T)
	for i, r := range hc.rows {
		gr := g[(b*st.lay.N+r)*W+h*dh:][:dh]
		be := float64(beta[h*R+i])
		gp, gy := dot(gr, oPlain[i*W+h*dh:][:dh]), dot(gr, y[(h*R+i)*dh:][:dh])
		c[r], shift[r] = 1-alpha+alpha*be, alpha*be*(gy-(1-be)*gp)
	}
	return c, shift
}

// plainBackward backpropagates c_r·P·v of sample b, head h into q, k and v, each row's softmax backward
// shifted by shift_r (none when shift is nil).
func plainBackward[T Float](m *Arena, lay Layout, b, h int, q, k, v, p, g []T, c, shift []float64, dq, dk, dv []T) {
	N, L, dh, W := lay.N, lay.Lens[b], lay.HeadDim, lay.Heads*lay.HeadDim
	if L == 0 {
		return
	}
	P := p[(b*lay.Heads+h)*N*N:][:N*N]
	gO := get[T](m, N*dh, false) // every element written below, and dS by its product (β = 0)
	gb := headAt(g, lay, b, h)
	for r := 0; r < N; r++ {
		for d := 0; d < dh; d++ {
			gO[r*dh+d] = T(c[r]) * gb[r*W+d]
		}
	}
	dS := get[T](m, N*L, false)
	defer Recycle(m, gO, dS)
	matmulLD(false, true, N, L, dh, 1, gO, dh, headAt(v, lay, b, h), W, 0, dS, L)
	matmulLD(true, false, L, dh, N, 1, P, N, gO, dh, 1, headAt(dv, lay, b, h), W)
	for r := 0; r < N; r++ {
		sh := 0.0
		if shift != nil {
			sh = shift[r]
		}
		softmaxBackward(P[r*N:r*N+L], dS[r*L:(r+1)*L], sh)
	}
	scale := T(1 / math.Sqrt(float64(dh)))
	matmulLD(false, false, N, dh, L, scale, dS, L, headAt(k, lay, b, h), W, 1, headAt(dq, lay, b, h), W)
	matmulLD(true, false, L, dh, N, scale, dS, L, headAt(q, lay, b, h), W, 1, headAt(dk, lay, b, h), W)
}

// hrRowsBackward backpropagates α·P_hr·v_hr = α·z·W'_Vᵀ of sample b's selecting rows (union form) into q
// and the HR weights: W'_V through z, W'_K through the union's keys. The plain part of their second softmax
// went back with the first (plainTerms).
func hrRowsBackward[T Float](st *attnState, hc *hrCache, b int, g, wv, dq, dwk, dwv []T) {
	lay, alpha := st.lay, T(st.plan.Alpha)
	H, R, U, dh, W := lay.Heads, len(hc.rows), len(hc.union), lay.HeadDim, lay.Heads*lay.HeadDim
	kHR, pHR, qr, z := hc.kHR.([]T), hc.pSel.([]T), hc.qr.([]T), hc.z.([]T)
	m := st.mem
	// Every element of these is written before it is read (dS is cleared row by row, each head's columns
	// of dkHR and of dW'_V once).
	gr, dz := get[T](m, H*R*dh, false), get[T](m, R*H*W, false) // α·g [H, R, dh]; ∂L/∂z [R, H, D]
	dS, dkHR, dqr := get[T](m, H*R*U, false), get[T](m, U*W, false), get[T](m, R*dh, false)
	defer Recycle(m, gr, dz, dS, dkHR, dqr)
	for h := 0; h < H; h++ {
		G := gr[h*R*dh:][:R*dh]
		for i, r := range hc.rows {
			for d, x := range g[(b*lay.N+r)*W+h*dh:][:dh] {
				G[i*dh+d] = alpha * x
			}
		}
		matmulLD(false, false, R, W, dh, 1, G, dh, wv[h*dh*W:], W, 0, dz[h*W:], H*W)
		matmulLD(true, false, dh, W, R, 1, G, dh, z[h*W:], H*W, 0, dwv[h*dh*W:], W)
	}
	selectedScoresBackward(st, hc, pHR, gr, dz, dS)
	scale := T(1 / math.Sqrt(float64(dh)))
	for h := 0; h < H; h++ {
		dSh := dS[h*R*U:][:R*U]
		matmulLD(false, false, R, dh, U, scale, dSh, U, kHR[h*dh:], W, 0, dqr, dh)
		for i, r := range hc.rows {
			AddTo(dq[(b*lay.N+r)*W+h*dh:][:dh], dqr[i*dh:(i+1)*dh])
		}
		matmulLD(true, false, U, dh, R, scale, dSh, U, qr[h*dh:], W, 0, dkHR[h*dh:], W)
	}
	hrWeightGrads(m, st.plan, hc, dkHR, nil, dwk, nil)
}

// selectedScoresBackward sets dS [H, R, U] to the gradient of the rows' HR scores: for row i and a token j
// it selected, p_j·(dp_j − g·(β·o_plain + y)) with dp_j = dz_i·hd_j, the softmax backward over the row's
// second softmax (its plain part's share went back with the first); 0 elsewhere.
func selectedScoresBackward[T Float](st *attnState, hc *hrCache, pHR, gr, dz, dS []T) {
	lay, m := st.lay, st.mem
	H, R, U, dh, W := lay.Heads, len(hc.rows), len(hc.union), lay.HeadDim, lay.Heads*lay.HeadDim
	beta, oPlain, y := hc.beta.([]T), hc.oPlain.([]T), hc.y.([]T)
	hdU, most, vector := hc.hdU.([]T), hc.mostSelected(), selectedVector[T](H, W)
	// Every row's part of these is written before it is read; xs holds its gathered rows for the GEMM path.
	dps, xs := get[T](m, H*most, false), gemmGather[T](m, vector, most*W)
	defer Recycle(m, xs, dps)
	for i, sel := range hc.sel {
		k := len(sel)
		dp, hs, js := dps[:H*k], k, 1 // dp is [H, k], or [k, H] from the vector kernel
		if vector {
			dotsVector(dp, dz[i*H*W:][:H*W], hdU, sel, W)
			hs, js = 1, H
		} else {
			x := xs[:k*W]
			copyRows(x, hdU, sel, W)
			matmul(false, true, H, k, W, 1, dz[i*H*W:][:H*W], x, 0, dp)
		}
		for h := 0; h < H; h++ {
			G := gr[(h*R+i)*dh:][:dh] // α·g of the row
			gSel := T(float64(beta[h*R+i])*dot(G, oPlain[i*W+h*dh:][:dh]) + dot(G, y[(h*R+i)*dh:][:dh]))
			row, p := dS[(h*R+i)*U:][:U], pHR[(h*R+i)*U:][:U]
			clear(row)
			for j, u := range sel {
				row[u] = p[u] * (dp[h*hs+j*js] - gSel)
			}
		}
	}
}

// denseRowsBackward backpropagates α·P_sel·[v; v_hr] of sample b's blended rows (dense form) into q, k, v and
// the HR weights.
func denseRowsBackward[T Float](st *attnState, hc *hrCache, b int, k, v, g, dq, dk, dv, dwk, dwv []T) {
	lay, alpha := st.lay, T(st.plan.Alpha)
	R, U, L, dh, W := len(hc.rows), len(hc.union), lay.Lens[b], lay.HeadDim, lay.Heads*lay.HeadDim
	kHR, vHR, pSel, qr := hc.kHR.([]T), hc.vHR.([]T), hc.pSel.([]T), hc.qr.([]T)
	m := st.mem
	// Every element of these is written before it is read (each head's columns of dkHR and dvHR once).
	dkHR, dvHR := get[T](m, U*W, false), get[T](m, U*W, false)
	gr, dS, dqr := get[T](m, R*dh, false), get[T](m, R*(L+U), false), get[T](m, R*dh, false)
	defer Recycle(m, dkHR, dvHR, gr, dS, dqr)
	scale := T(1 / math.Sqrt(float64(dh)))
	for h := 0; h < lay.Heads; h++ {
		P := pSel[h*R*(L+U):][:R*(L+U)]
		for i, r := range hc.rows {
			for d := 0; d < dh; d++ {
				gr[i*dh+d] = 0
				if hc.blend[i] {
					gr[i*dh+d] = alpha * g[(b*lay.N+r)*W+h*dh+d]
				}
			}
		}
		matmulLD(false, true, R, L, dh, 1, gr, dh, headAt(v, lay, b, h), W, 0, dS, L+U)
		matmulLD(false, true, R, U, dh, 1, gr, dh, vHR[h*dh:], W, 0, dS[L:], L+U)
		matmulLD(true, false, L, dh, R, 1, P, L+U, gr, dh, 1, headAt(dv, lay, b, h), W)
		matmulLD(true, false, U, dh, R, 1, P[L:], L+U, gr, dh, 0, dvHR[h*dh:], W)
		for i := 0; i < R; i++ {
			softmaxBackward(P[i*(L+U):(i+1)*(L+U)], dS[i*(L+U):(i+1)*(L+U)], 0)
		}
		matmulLD(false, false, R, dh, L, scale, dS, L+U, headAt(k, lay, b, h), W, 0, dqr, dh)
		matmulLD(false, false, R, dh, U, scale, dS[L:], L+U, kHR[h*dh:], W, 1, dqr, dh)
		for i, r := range hc.rows {
			AddTo(dq[(b*lay.N+r)*W+h*dh:][:dh], dqr[i*dh:(i+1)*dh])
		}
		matmulLD(true, false, L, dh, R, scale, dS, L+U, qr[h*dh:], W, 1, headAt(dk, lay, b, h), W)
		matmulLD(true, false, U, dh, R, scale, dS[L:], L+U, qr[h*dh:], W, 0, dkHR[h*dh:], W)
	}
	hrWeightGrads(m, st.plan, hc, dkHR, dvHR, dwk, dwv)
}

// hrWeightGrads sets dW'_K = ropeᵀ(dk_hr)ᵀ·hd_U and, when dvHR is given (the dense form), dW'_V = dv_hrᵀ·hd_U.
func hrWeightGrads[T Float](m *Arena, plan *FlexPlan, hc *hrCache, dkHR, dvHR, dwk, dwv []T) {
	width, U := plan.Heads*plan.HeadDim, len(hc.union)
	dPre := get[T](m, U*width, false) // every row rotated into
	defer Recycle(m, dPre)
	rotateUnion(dPre, dkHR, hc, plan.HeadDim, true)
	hdU := hc.hdU.([]T)
	matmul(true, false, width, width, U, 1, dPre, hdU, 0, dwk)
	if dvHR != nil {
		matmul(true, false, width, width, U, 1, dvHR, hdU, 0, dwv)
	}
}

// softmax normalises x in place (max-subtracted, accumulated in float64).
func softmax[T Float](x []T) { softmaxSum(x) }

// softmaxSum normalises x in place and returns its largest value m and Σ e^(x−m), of which the log-sum-exp
// of x is m + log Σ.
func softmaxSum[T Float](x []T) (T, float64) {
	if len(x) == 0 {
		return T(math.Inf(-1)), 0
	}
	m := maxOf(x)
	expShifted(x, m)
	s := sum64(x)
	inv := T(1 / s)
	for i := range x {
		x[i] *= inv
	}
	return m, s
}

// softmaxBackward turns dp = ∂L/∂P into ∂L/∂s in place: ds_j = P_j·(dp_j − Σ_i P_i·dp_i − shift), where
// shift carries what another softmax sharing the scores s adds.
func softmaxBackward[T Float](p, dp []T, shift float64) {
	rho := T(shift + dot64(p, dp))
	dp = dp[:len(p)]
	for i, pi := range p {
		dp[i] = pi * (dp[i] - rho)
	}
}

// maxOf is the largest element of a non-empty x, four running maxima at a time: max is exact, so the
// order does not change the result, and the four chains overlap.
func maxOf[T Float](x []T) T {
	m0, m1, m2, m3 := x[0], x[0], x[0], x[0]
	i := 0
	for ; i+4 <= len(x); i += 4 {
		m0, m1, m2, m3 = max(m0, x[i]), max(m1, x[i+1]), max(m2, x[i+2]), max(m3, x[i+3])
	}
	for ; i < len(x); i++ {
		m0 = max(m0, x[i])
	}
	return max(max(m0, m1), max(m2, m3))
}

// sum64 is Σ x in float64, as four interleaved partial sums (independent chains of adds, which overlap)
// added pairwise at the end.
func sum64[T Float](x []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0, s1, s2, s3 = s0+float64(x[i]), s1+float64(x[i+1]), s2+float64(x[i+2]), s3+float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// dot64 is Σ a·b in float64, four partial sums like sum64.
func dot64[T Float](a, b []T) float64 {
	var s0, s1, s2, s3 float64
	b = b[:len(a)]
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
		s2 += float64(a[i+2]) * float64(b[i+2])
		s3 += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

func dot[T Float](a, b []T) float64 {
	var s T
	for i := range a {
		s += a[i] * b[i]
	}
	return float64(s)
}

func axpy[T Float](y []T, a T, x []T) {
	for i := range y {
		y[i] += a * x[i]
	}
}

// packedShape is the shape of a 1-D tensor holding several gradients one after the other.
func packedShape(sizes []tensor.Shape) func([]tensor.Shape) (tensor.Shape, error) {
	return func([]tensor.Shape) (tensor.Shape, error) {
		n := 0
		for _, s := range sizes {
			n += s.TotalSize()
		}
		return tensor.Shape{n}, nil
	}
}

// unpackAll splits a packed gradient into one node per input, nil where want is false.
func unpackAll(packed *G.Node, sizes []tensor.Shape, want []bool) (G.Nodes, error) {
	res := make(G.Nodes, len(sizes))
	off := 0
	for i, s := range sizes {
		if want[i] {
			n, err := unpack(packed, off, s)
			if err != nil {
				return nil, err
			}
			res[i] = n
		}
		off += s.TotalSize()
	}
	return res, nil
}

// unpack copies the elements [off, off+|shape|) of a packed 1-D tensor into a tensor of the given shape.
func unpack(packed *G.Node, off int, shape tensor.Shape) (*G.Node, error) {
	op := &fnOp{name: fmt.Sprintf("Unpack%d", off)}
	op.shape = func([]tensor.Shape) (tensor.Shape, error) { return shape.Clone(), nil }
	op.do = pick(unpackDo[float32](off, shape), unpackDo[float64](off, shape))
	return apply(op, len(shape), packed)
}

func unpackDo[T Float](off int, shape tensor.Shape) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		out, y := alloc[T](m, shape...)
		copy(y, slice[T](v[0])[off:])
		return out, nil
	}
}
