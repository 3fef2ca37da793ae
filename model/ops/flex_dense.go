// The dense form of FlexAttention (docs/DESIGN.md §7), as the official implementation computes it: per image
// sample it projects the keys and values of all M HR tokens, and for every real row scores them with the
// row's plain keys in a second softmax, masked to what the row sees and selected; only the HR rows with a
// selection are blended. It computes the union form's numbers (flex_union.go) at the official cost. It is
// kept as the oracle the union form is tested against (TestDenseEqualsUnion, TestBenchModes) and as the
// bench baseline (flextrain bench --mode flex-dense, FlexPlan.Dense).

package ops

import "math"

// denseCache is what the dense form's forward pass keeps of one sample for its backward pass.
type denseCache[T Float] struct {
	hrUnion[T]
	blend []bool // per row: whether its output is blended (an HR row with a selection)
	vHR   []T    // [U, D] the HR values hd·W'_Vᵀ
	pSel  []T    // [H, R, L+U] second-softmax probabilities over [plain keys; union]
}

// widenRows widens the computed rows to every real row of sample b, as the official implementation computes
// both softmaxes for all of them; only the HR rows with a selection are blended.
func widenRows(plan *FlexPlan, b int, rows []int, perRow [][]int) ([]int, []bool, [][]int) {
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

// denseForward projects the HR values, computes the second softmax of the rows of hu over [plain keys;
// union] and blends it into o: out = (1−α)·o_plain + α·P_sel·[v; v_hr] on the blended rows.
func denseForward[T Float](hu hrUnion[T], blend []bool, k, v, wv, o []T) *denseCache[T] {
	H, R, U, dh, W := hu.dims()
	L, m := hu.plan.Lens[hu.b], hu.mem
	dc := &denseCache[T]{hrUnion: hu, blend: blend, vHR: lend[T](m, U*W, false)} // vHR multiplied into (β = 0)
	MatMulNT(dc.vHR, dc.hdU, wv, U, W, W)
	dc.pSel = Buffer[T](m, H*R*(L+U))
	mix := Scratch[T](m, R*dh)
	defer Recycle(m, mix)
	for h := 0; h < H; h++ {
		dc.headForward(h, k, v, mix)
		dc.blendHead(h, o, mix)
	}
	return dc
}

// headForward sets head h's second softmax of every row into pSel and its mean of [v; v_hr] into mix [R, dh].
func (dc *denseCache[T]) headForward(h int, k, v, mix []T) {
	_, R, U, dh, W := dc.dims()
	lay, b, L := dc.plan.Layout, dc.b, dc.plan.Lens[dc.b]
	scale := T(1 / math.Sqrt(float64(dh)))
	S := dc.pSel[h*R*(L+U):][:R*(L+U)]
	matmulLD(false, true, R, L, dh, scale, dc.qr[h*dh:], W, headAt(k, lay, b, h), W, 0, S, L+U)
	matmulLD(false, true, R, U, dh, scale, dc.qr[h*dh:], W, dc.kHR[h*dh:], W, 0, S[L:], L+U)
	for i, r := range dc.rows {
		maskedSoftmax(S[i*(L+U):(i+1)*(L+U)], lay.keys(b, r), L, dc.sel[i])
	}
	matmulLD(false, false, R, dh, L, 1, S, L+U, headAt(v, lay, b, h), W, 0, mix, dh)
	matmulLD(false, false, R, dh, U, 1, S[L:], L+U, dc.vHR[h*dh:], W, 1, mix, dh)
}

// blendHead sets head h of each blended row of o to (1−α)·o + α·mix.
func (dc *denseCache[T]) blendHead(h int, o, mix []T) {
	_, _, _, dh, W := dc.dims()
	alpha := T(dc.plan.Alpha)
	for i, r := range dc.rows {
		if !dc.blend[i] {
			continue
		}
		or := o[(dc.b*dc.plan.N+r)*W+h*dh:][:dh]
		for d := range or {
			or[d] = (1-alpha)*or[d] + alpha*mix[i*dh+d]
		}
	}
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

// plainTerms: a blended row's second softmax goes back apart, so its P_plain·v only weighs c_r = 1−α, with
// no shift.
func (dc *denseCache[T]) plainTerms(_ int, _ []T, w []float64) []float64 {
	for i, r := range dc.rows {
		if dc.blend[i] {
			w[r] = 1 - dc.plan.Alpha
		}
	}
	return nil
}

// denseGrads are the dense form's buffers for one sample's backward pass.
type denseGrads[T Float] struct {
	gr, dS, dqr []T // [R, dh] α·g of the blended rows, [R, L+U] ∂L/∂scores, [R, dh] the rows' query gradient
	dkHR, dvHR  []T // [U, D] the gradients of the HR keys and values
}

// backward backpropagates α·P_sel·[v; v_hr] of the sample's blended rows into q, k, v and the HR weights.
func (dc *denseCache[T]) backward(t *attnBack[T], dwk, dwv []T) {
	H, R, U, dh, W := dc.dims()
	L, m := dc.plan.Lens[dc.b], dc.mem
	// Every element of these is written before it is read (each head's columns of dkHR and dvHR once).
	s := denseGrads[T]{dkHR: get[T](m, U*W, false), dvHR: get[T](m, U*W, false),
		gr: get[T](m, R*dh, false), dS: get[T](m, R*(L+U), false), dqr: get[T](m, R*dh, false)}
	defer Recycle(m, s.dkHR, s.dvHR, s.gr, s.dS, s.dqr)
	for h := 0; h < H; h++ {
		dc.softmaxGrads(t, h, s)
		dc.scoreGrads(t, h, s)
	}
	dc.weightGrads(s.dkHR, s.dvHR, dwk, dwv)
}

// softmaxGrads backpropagates head h's α·P_sel·[v; v_hr] into dv and dvHR, and through the softmax into the
// rows' scores s.dS.
func (dc *denseCache[T]) softmaxGrads(t *attnBack[T], h int, s denseGrads[T]) {
	_, R, U, dh, W := dc.dims()
	lay, b, L := dc.plan.Layout, dc.b, dc.plan.Lens[dc.b]
	P := dc.pSel[h*R*(L+U):][:R*(L+U)]
	dc.blendGrad(t.g, h, s.gr)
	matmulLD(false, true, R, L, dh, 1, s.gr, dh, headAt(t.v, lay, b, h), W, 0, s.dS, L+U)
	matmulLD(false, true, R, U, dh, 1, s.gr, dh, dc.vHR[h*dh:], W, 0, s.dS[L:], L+U)
	matmulLD(true, false, L, dh, R, 1, P, L+U, s.gr, dh, 1, headAt(t.dv, lay, b, h), W)
	matmulLD(true, false, U, dh, R, 1, P[L:], L+U, s.gr, dh, 0, s.dvHR[h*dh:], W)
	for i := 0; i < R; i++ {
		softmaxBackward(P[i*(L+U):(i+1)*(L+U)], s.dS[i*(L+U):(i+1)*(L+U)], 0)
	}
}

// blendGrad sets gr [R, dh] to head h of α·g on the blended rows, 0 on the others.
func (dc *denseCache[T]) blendGrad(g []T, h int, gr []T) {
	_, _, _, dh, W := dc.dims()
	alpha, N := T(dc.plan.Alpha), dc.plan.N
	for i, r := range dc.rows {
		for d := 0; d < dh; d++ {
			gr[i*dh+d] = 0
			if dc.blend[i] {
				gr[i*dh+d] = alpha * g[(dc.b*N+r)*W+h*dh+d]
			}
		}
	}
}

// scoreGrads backpropagates head h's score gradient s.dS into the rows of dq, into dk and into dkHR.
func (dc *denseCache[T]) scoreGrads(t *attnBack[T], h int, s denseGrads[T]) {
	_, R, U, dh, W := dc.dims()
	lay, b, L := dc.plan.Layout, dc.b, dc.plan.Lens[dc.b]
	scale := T(1 / math.Sqrt(float64(dh)))
	matmulLD(false, false, R, dh, L, scale, s.dS, L+U, headAt(t.k, lay, b, h), W, 0, s.dqr, dh)
	matmulLD(false, false, R, dh, U, scale, s.dS[L:], L+U, dc.kHR[h*dh:], W, 1, s.dqr, dh)
	dc.addRows(t.dq, s.dqr, h)
	matmulLD(true, false, L, dh, R, scale, s.dS, L+U, dc.qr[h*dh:], W, 1, headAt(t.dk, lay, b, h), W)
	matmulLD(true, false, U, dh, R, scale, s.dS[L:], L+U, dc.qr[h*dh:], W, 0, s.dkHR[h*dh:], W)
}
