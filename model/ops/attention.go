package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Layout describes a right-padded batch folded into rows: sample b owns rows [b·N, (b+1)·N), of which the
// first Lens[b] are real. Every attention row r sees the keys j ≤ r with j < Lens[b] (causal and padding
// mask), so padded rows see the real keys and no row is empty.
type Layout struct {
	B, N    int
	Lens    []int
	Heads   int
	HeadDim int
}

// keys is the number of keys row r of sample b sees.
func (l Layout) keys(b, r int) int { return min(r+1, l.Lens[b]) }

// FlexPlan is what a FlexAttention layer needs beside its tensors (DESIGN.md §7): the HR rows of each sample,
// the HR RoPE tables of each image sample and α. It also receives the layer's selection when the layer runs.
type FlexPlan struct {
	Layout
	Alpha float64
	Rows  [][]int // per sample, the HR rows in increasing order; nil for text-only samples
	// RopeCos and RopeSin are per sample [M, dh] tables for the HR keys (nil for text-only samples).
	RopeCos, RopeSin [][]float64
	M                int // HR tokens per image (M_all)
	Cells            CellGrid
	// Dense projects and scores all M HR tokens for every HR row, masking the unselected ones out of the
	// softmax: the same numbers at the cost of the official implementation (a benchmark baseline).
	Dense bool

	// Selected holds, after the forward pass, each HR row's selected HR tokens (sorted), per sample.
	Selected [][][]int
}

// CellGrid maps selection cells to HR tokens: HR token (R, C) of the Zg×Zg grid belongs to cell
// (⌊R·G/Zg⌋, ⌊C·G/Zg⌋) of the G×G grid (DESIGN.md §8 step 6).
type CellGrid struct{ G, Zg int }

// Tokens returns the HR tokens of the selected cells (cells is G² flags, row-major), in increasing order.
func (c CellGrid) Tokens(cells func(i int) bool) []int {
	var out []int
	for R := 0; R < c.Zg; R++ {
		for C := 0; C < c.Zg; C++ {
			if cells(R*c.G/c.Zg*c.G + C*c.G/c.Zg) {
				out = append(out, R*c.Zg+C)
			}
		}
	}
	return out
}

// Attention is plain causal multi-head attention over q, k, v [B·N, H·dh] (q and k already rotated).
func Attention(q, k, v *G.Node, lay Layout) (*G.Node, error) {
	st := &attnState{lay: lay}
	op := &fnOp{name: "Attention", diff: []bool{true, true, true}, shape: sameShape}
	op.do = pick(func(in []G.Value) (G.Value, error) { return attnForward[float32](st, in, nil) },
		func(in []G.Value) (G.Value, error) { return attnForward[float64](st, in, nil) })
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		sizes := []tensor.Shape{in[0].Shape(), in[1].Shape(), in[2].Shape()}
		back := &fnOp{name: "AttentionGrad", shape: packedShape(sizes)}
		back.do = pick(func(v []G.Value) (G.Value, error) { return attnBackward[float32](st, v) },
			func(v []G.Value) (G.Value, error) { return attnBackward[float64](st, v) })
		packed, err := apply(back, 1, in[0], in[1], in[2], g)
		if err != nil {
			return nil, err
		}
		return unpackAll(packed, sizes, []bool{true, true, true})
	}
	return apply(op, 2, q, k, v)
}

// FlexAttention is the FlexAttention of DESIGN.md §7 over q, k, v [B·N, D], the HR projections wk, wv
// [D, D], the HR features hd [B·M, D] (constants) and the selection cells [B·N, G²] chosen by the previous
// layer (no gradient). Only the union of the HR tokens selected by some row of a sample is projected and
// attended, each HR row with its own mask. needW says whether wk and wv need gradients.
func FlexAttention(q, k, v, wk, wv, hd, cells *G.Node, plan *FlexPlan, needW bool) (*G.Node, error) {
	st := &attnState{lay: plan.Layout, plan: plan}
	op := &fnOp{name: "FlexAttention", diff: []bool{true, true, true, needW, needW, false, false}, shape: sameShape}
	op.do = pick(func(in []G.Value) (G.Value, error) { return attnForward[float32](st, in[:3], in[3:]) },
		func(in []G.Value) (G.Value, error) { return attnForward[float64](st, in[:3], in[3:]) })
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		sizes := []tensor.Shape{in[0].Shape(), in[1].Shape(), in[2].Shape(), in[3].Shape(), in[4].Shape()}
		back := &fnOp{name: "FlexAttentionGrad", shape: packedShape(sizes)}
		back.do = pick(func(v []G.Value) (G.Value, error) { return attnBackward[float32](st, v) },
			func(v []G.Value) (G.Value, error) { return attnBackward[float64](st, v) })
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
	lay  Layout
	plan *FlexPlan
	p    any       // []T: plain probabilities [B, H, N, N]
	hr   []hrCache // per sample, FlexAttention only
}

// hrCache is one sample's HR part: the union of selected tokens, their keys and values, and each HR
// row's mask over the union and second softmax.
type hrCache struct {
	union []int    // HR tokens selected by some row, increasing
	rows  []int    // HR rows with a non-empty selection
	masks [][]int  // per row in rows, positions in union of its selected tokens (all of them when dense)
	keep  [][]bool // dense only: per row in rows, whether each union token is selected
	hdU   any      // []T [U, D] gathered HR features
	kHR   any      // []T [U, D] rotated HR keys
	vHR   any      // []T [U, D] HR values
	pSel  any      // []T per row in rows, per head: keys(b,r) plain + len(mask) HR probabilities
}

func attnForward[T Float](st *attnState, qkv, flex []G.Value) (G.Value, error) {
	lay := st.lay
	q, k, v := slice[T](qkv[0]), slice[T](qkv[1]), slice[T](qkv[2])
	width := lay.Heads * lay.HeadDim
	if len(q) != lay.B*lay.N*width || len(k) != len(q) || len(v) != len(q) {
		return nil, fmt.Errorf("ops: attention: got %d values, layout wants %d", len(q), lay.B*lay.N*width)
	}
	out, o := alloc[T](lay.B*lay.N, width)
	p := make([]T, lay.B*lay.Heads*lay.N*lay.N)
	st.p = p
	plainForward(lay, q, k, v, p, o)
	if flex != nil {
		if err := flexForward(st, q, k, v, flex, o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// plainForward computes P = softmax(q kᵀ/√dh + mask) into p and P·v into o for every row and head.
func plainForward[T Float](lay Layout, q, k, v, p, o []T) {
	width, dh := lay.Heads*lay.HeadDim, lay.HeadDim
	scale := 1 / math.Sqrt(float64(dh))
	for b := 0; b < lay.B; b++ {
		for h := 0; h < lay.Heads; h++ {
			for r := 0; r < lay.N; r++ {
				nk := lay.keys(b, r)
				row := p[((b*lay.Heads+h)*lay.N+r)*lay.N:][:lay.N]
				qr := q[(b*lay.N+r)*width+h*dh:][:dh]
				for j := 0; j < nk; j++ {
					row[j] = T(scale * dot(qr, k[(b*lay.N+j)*width+h*dh:][:dh]))
				}
				softmax(row[:nk])
				or := o[(b*lay.N+r)*width+h*dh:][:dh]
				for j := 0; j < nk; j++ {
					axpy(or, row[j], v[(b*lay.N+j)*width+h*dh:][:dh])
				}
			}
		}
	}
}

// flexForward overwrites the HR rows of o with (1−α)·P_plain·v + α·P_sel·[v; v_hr].
func flexForward[T Float](st *attnState, q, k, v []T, flex []G.Value, o []T) error {
	plan, lay := st.plan, st.lay
	wk, wv, hd, cells := slice[T](flex[0]), slice[T](flex[1]), slice[T](flex[2]), slice[T](flex[3])
	width := lay.Heads * lay.HeadDim
	nCells := plan.Cells.G * plan.Cells.G
	if len(hd) != lay.B*plan.M*width || len(cells) != lay.B*lay.N*nCells || len(wk) != width*width || len(wv) != width*width {
		return fmt.Errorf("ops: FlexAttention: inputs do not fit the plan (hd %d, cells %d, w %d)", len(hd), len(cells), len(wk))
	}
	st.hr = make([]hrCache, lay.B)
	plan.Selected = make([][][]int, lay.B)
	for b := 0; b < lay.B; b++ {
		if plan.Rows[b] == nil {
			continue
		}
		hc := selectUnion(plan, b, cells)
		plan.Selected[b] = selectedTokens(hc)
		if len(hc.union) == 0 {
			continue
		}
		projectHR[T](&hc, plan, b, hd[b*plan.M*width:][:plan.M*width], wk, wv, width)
		hrRowsForward(st, &hc, b, q, k, v, o)
		st.hr[b] = hc
	}
	return nil
}

// selectUnion reads the selection of sample b's HR rows and builds the union and the per-row masks.
func selectUnion[T Float](plan *FlexPlan, b int, cells []T) hrCache {
	nCells := plan.Cells.G * plan.Cells.G
	inUnion := make([]bool, plan.M)
	perRow := make([][]int, 0, len(plan.Rows[b]))
	var hc hrCache
	for _, r := range plan.Rows[b] {
		c := cells[(b*plan.N+r)*nCells:][:nCells]
		toks := plan.Cells.Tokens(func(i int) bool { return c[i] != 0 })
		if len(toks) == 0 {
			continue
		}
		hc.rows = append(hc.rows, r)
		perRow = append(perRow, toks)
		for _, t := range toks {
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
	hc.masks = make([][]int, len(perRow))
	for i, toks := range perRow {
		hc.masks[i] = make([]int, len(toks))
		for j, t := range toks {
			hc.masks[i][j] = pos[t]
		}
	}
	if plan.Dense && len(hc.rows) > 0 {
		densify(&hc, plan.M)
	}
	return hc
}

// densify widens the union to all M HR tokens and every row's mask to all of them, remembering which
// tokens each row selected.
func densify(hc *hrCache, M int) {
	all := make([]int, M)
	for t := range all {
		all[t] = t
	}
	hc.keep = make([][]bool, len(hc.masks))
	for i, m := range hc.masks {
		hc.keep[i] = make([]bool, M)
		for _, u := range m {
			hc.keep[i][hc.union[u]] = true
		}
		hc.masks[i] = all
	}
	hc.union = all
}

// selectedTokens lists, for every row of hc.rows, its HR tokens.
func selectedTokens(hc hrCache) [][]int {
	out := make([][]int, len(hc.rows))
	for i, m := range hc.masks {
		for _, u := range m {
			if hc.keep == nil || hc.keep[i][hc.union[u]] {
				out[i] = append(out[i], hc.union[u])
			}
		}
	}
	return out
}

// projectHR gathers the union's HR features and projects them: k_hr = rope_hr(hd·W'_Kᵀ), v_hr = hd·W'_Vᵀ.
func projectHR[T Float](hc *hrCache, plan *FlexPlan, b int, hd, wk, wv []T, width int) {
	U, dh := len(hc.union), plan.HeadDim
	hdU := make([]T, U*width)
	for i, t := range hc.union {
		copy(hdU[i*width:(i+1)*width], hd[t*width:(t+1)*width])
	}
	pre, kHR, vHR := make([]T, U*width), make([]T, U*width), make([]T, U*width)
	MatMulNT(pre, hdU, wk, U, width, width)
	MatMulNT(vHR, hdU, wv, U, width, width)
	cos, sin := convert[T](plan.RopeCos[b]), convert[T](plan.RopeSin[b])
	for i, t := range hc.union {
		for h := 0; h < width; h += dh {
			o := i*width + h
			RopeRow(kHR[o:o+dh], pre[o:o+dh], cos[t*dh:(t+1)*dh], sin[t*dh:(t+1)*dh], false)
		}
	}
	hc.hdU, hc.kHR, hc.vHR = hdU, kHR, vHR
}

// hrRowsForward computes the second softmax of every HR row with a selection and blends it into o.
func hrRowsForward[T Float](st *attnState, hc *hrCache, b int, q, k, v, o []T) {
	lay, alpha := st.lay, T(st.plan.Alpha)
	width, dh := lay.Heads*lay.HeadDim, lay.HeadDim
	scale := 1 / math.Sqrt(float64(dh))
	kHR, vHR := hc.kHR.([]T), hc.vHR.([]T)
	var pSel []T
	for i, r := range hc.rows {
		nk, mask := lay.keys(b, r), hc.masks[i]
		for h := 0; h < lay.Heads; h++ {
			row := make([]T, nk+len(mask))
			qr := q[(b*lay.N+r)*width+h*dh:][:dh]
			for j := 0; j < nk; j++ {
				row[j] = T(scale * dot(qr, k[(b*lay.N+j)*width+h*dh:][:dh]))
			}
			for j, u := range mask {
				row[nk+j] = T(scale * dot(qr, kHR[u*width+h*dh:][:dh]))
				if hc.keep != nil && !hc.keep[i][u] {
					row[nk+j] = T(math.Inf(-1))
				}
			}
			softmax(row)
			sel := make([]T, dh)
			for j := 0; j < nk; j++ {
				axpy(sel, row[j], v[(b*lay.N+j)*width+h*dh:][:dh])
			}
			for j, u := range mask {
				axpy(sel, row[nk+j], vHR[u*width+h*dh:][:dh])
			}
			or := o[(b*lay.N+r)*width+h*dh:][:dh]
			for d := range or {
				or[d] = (1-alpha)*or[d] + alpha*sel[d]
			}
			pSel = append(pSel, row...)
		}
	}
	hc.pSel = pSel
}

// attnBackward returns the packed gradients [dq; dk; dv] (plus [dW'_K; dW'_V] for FlexAttention) from the
// inputs q, k, v, …, and the upstream gradient last.
func attnBackward[T Float](st *attnState, in []G.Value) (G.Value, error) {
	q, k, v, g := slice[T](in[0]), slice[T](in[1]), slice[T](in[2]), slice[T](in[len(in)-1])
	width := st.lay.Heads * st.lay.HeadDim
	size := 3 * len(q)
	if st.plan != nil {
		size += 2 * width * width
	}
	out, packed := alloc[T](size)
	dq, dk, dv := packed[:len(q)], packed[len(q):2*len(q)], packed[2*len(q):3*len(q)]
	p, _ := st.p.([]T)
	if p == nil {
		return nil, fmt.Errorf("ops: attention backward ran before its forward pass")
	}
	plainBackward(st, q, k, v, p, g, dq, dk, dv)
	if st.plan != nil {
		dwk, dwv := packed[3*len(q):3*len(q)+width*width], packed[3*len(q)+width*width:]
		for b := range st.hr {
			if len(st.hr[b].rows) > 0 {
				hrRowsBackward(st, &st.hr[b], b, q, k, v, g, dq, dk, dv, dwk, dwv)
			}
		}
	}
	return out, nil
}

// plainBackward backpropagates O_plain = P·v for every row, with the upstream gradient scaled by (1−α) on
// HR rows that have a selection.
func plainBackward[T Float](st *attnState, q, k, v, p, g, dq, dk, dv []T) {
	lay := st.lay
	width, dh := lay.Heads*lay.HeadDim, lay.HeadDim
	scale := T(1 / math.Sqrt(float64(dh)))
	dp := make([]T, lay.N)
	for b := 0; b < lay.B; b++ {
		blend := st.blendRows(b)
		for h := 0; h < lay.Heads; h++ {
			for r := 0; r < lay.N; r++ {
				nk := lay.keys(b, r)
				row := p[((b*lay.Heads+h)*lay.N+r)*lay.N:][:nk]
				gr := g[(b*lay.N+r)*width+h*dh:][:dh]
				c := T(1)
				if blend[r] {
					c = 1 - T(st.plan.Alpha)
				}
				for j := 0; j < nk; j++ {
					vj := v[(b*lay.N+j)*width+h*dh:][:dh]
					dp[j] = c * T(dot(gr, vj))
					axpy(dv[(b*lay.N+j)*width+h*dh:][:dh], c*row[j], gr)
				}
				softmaxBackward(row, dp[:nk])
				qr, dqr := q[(b*lay.N+r)*width+h*dh:][:dh], dq[(b*lay.N+r)*width+h*dh:][:dh]
				for j := 0; j < nk; j++ {
					axpy(dqr, dp[j]*scale, k[(b*lay.N+j)*width+h*dh:][:dh])
					axpy(dk[(b*lay.N+j)*width+h*dh:][:dh], dp[j]*scale, qr)
				}
			}
		}
	}
}

// blendRows flags the rows of sample b whose output is blended with a selection.
func (st *attnState) blendRows(b int) []bool {
	out := make([]bool, st.lay.N)
	if st.plan == nil || st.hr == nil {
		return out
	}
	for _, r := range st.hr[b].rows {
		out[r] = true
	}
	return out
}

// hrRowsBackward backpropagates α·P_sel·[v; v_hr] of sample b's HR rows into q, k, v and the HR weights.
func hrRowsBackward[T Float](st *attnState, hc *hrCache, b int, q, k, v, g, dq, dk, dv, dwk, dwv []T) {
	lay, alpha := st.lay, T(st.plan.Alpha)
	width, dh := lay.Heads*lay.HeadDim, lay.HeadDim
	scale := T(1 / math.Sqrt(float64(dh)))
	kHR, vHR, pSel := hc.kHR.([]T), hc.vHR.([]T), hc.pSel.([]T)
	U := len(hc.union)
	dkHR, dvHR := make([]T, U*width), make([]T, U*width)
	off := 0
	for i, r := range hc.rows {
		nk, mask := lay.keys(b, r), hc.masks[i]
		for h := 0; h < lay.Heads; h++ {
			row := pSel[off : off+nk+len(mask)]
			off += len(row)
			gr := make([]T, dh)
			axpy(gr, alpha, g[(b*lay.N+r)*width+h*dh:][:dh])
			dp := make([]T, len(row))
			for j := 0; j < nk; j++ {
				dp[j] = T(dot(gr, v[(b*lay.N+j)*width+h*dh:][:dh]))
				axpy(dv[(b*lay.N+j)*width+h*dh:][:dh], row[j], gr)
			}
			for j, u := range mask {
				dp[nk+j] = T(dot(gr, vHR[u*width+h*dh:][:dh]))
				axpy(dvHR[u*width+h*dh:][:dh], row[nk+j], gr)
			}
			softmaxBackward(row, dp)
			qr, dqr := q[(b*lay.N+r)*width+h*dh:][:dh], dq[(b*lay.N+r)*width+h*dh:][:dh]
			for j := 0; j < nk; j++ {
				axpy(dqr, dp[j]*scale, k[(b*lay.N+j)*width+h*dh:][:dh])
				axpy(dk[(b*lay.N+j)*width+h*dh:][:dh], dp[j]*scale, qr)
			}
			for j, u := range mask {
				axpy(dqr, dp[nk+j]*scale, kHR[u*width+h*dh:][:dh])
				axpy(dkHR[u*width+h*dh:][:dh], dp[nk+j]*scale, qr)
			}
		}
	}
	hrWeightGrads(st.plan, hc, b, dkHR, dvHR, dwk, dwv)
}

// hrWeightGrads accumulates dW'_K += ropeᵀ(dk_hr)ᵀ·hd_U and dW'_V += dv_hrᵀ·hd_U.
func hrWeightGrads[T Float](plan *FlexPlan, hc *hrCache, b int, dkHR, dvHR, dwk, dwv []T) {
	width, dh, U := plan.Heads*plan.HeadDim, plan.HeadDim, len(hc.union)
	cos, sin := convert[T](plan.RopeCos[b]), convert[T](plan.RopeSin[b])
	dPre := make([]T, U*width)
	for i, t := range hc.union {
		for h := 0; h < width; h += dh {
			o := i*width + h
			RopeRow(dPre[o:o+dh], dkHR[o:o+dh], cos[t*dh:(t+1)*dh], sin[t*dh:(t+1)*dh], true)
		}
	}
	hdU := hc.hdU.([]T)
	matmul(true, false, width, width, U, 1, dPre, hdU, 1, dwk)
	matmul(true, false, width, width, U, 1, dvHR, hdU, 1, dwv)
}

// softmax normalises x in place (max-subtracted, accumulated in float64).
func softmax[T Float](x []T) {
	if len(x) == 0 {
		return
	}
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	var s float64
	for i, v := range x {
		e := math.Exp(float64(v - m))
		x[i] = T(e)
		s += e
	}
	inv := T(1 / s)
	for i := range x {
		x[i] *= inv
	}
}

// softmaxBackward turns dp = ∂L/∂P into ∂L/∂s in place: ds_j = P_j·(dp_j − Σ_i P_i·dp_i).
func softmaxBackward[T Float](p, dp []T) {
	var rho float64
	for i := range p {
		rho += float64(p[i]) * float64(dp[i])
	}
	for i := range p {
		dp[i] = p[i] * (dp[i] - T(rho))
	}
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
	return func(v []G.Value) (G.Value, error) {
		out, y := alloc[T](shape...)
		copy(y, slice[T](v[0])[off:])
		return out, nil
	}
}
