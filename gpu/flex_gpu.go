//go:build gpu

package gpu

import (
	"fmt"
	"math"

	"github.com/flextrain/flextrain/model/ops"
)

// Flex is a FlexAttention forward pass's state on the device, for its backward pass: the plain
// probabilities, and per sample with HR rows the second-softmax probabilities, HR features, keys and
// values, row flags and RoPE tables of its HR tokens. Free releases it.
type Flex struct {
	plan       *ops.FlexPlan
	p          Buffer        // plain P [B, H, N, N]
	samples    []*flexSample // per sample; nil where no row selected an HR token
	cells      Buffer        // the selection [B·N, G²]
	wk16, wv16 Buffer        // W'_K and W'_V in bfloat16 during the forward pass (Products BF16)
}

// flexSample is one sample's HR part: the second softmax of R of its L real rows (flexRows) over its plain
// keys and the U HR tokens of its hrSet (all M in the dense form, the selected ones' union in the union
// form).
type flexSample struct {
	rows             []float32 // [L] 1 on the HR rows with a selection, 0 on the others
	computed         []int64   // [R] the rows computed
	u                int       // U
	rowsel, cos, sin Buffer    // rows on the device; the tokens' RoPE tables [U, dh]
	cellOf, hd       Buffer    // int64 [U]: each token's selection cell; its HR features [U, W] (native products)
	hd16             Buffer    // with Products BF16: the HR features rounded, as bfloat16 bits (hd is not kept)
	index, qR        Buffer    // int64 [R]: computed on the device; their queries [R, W]
	pSel, kHR, vHR   Buffer    // [H, R, L+U]; [U, W] (native products); [U, W]
	kHR16            Buffer    // with Products BF16: the keys held in bfloat16 between the passes, as bits
}

// FlexAttention is ops.FlexAttention's forward pass on the device: plain attention for every row, then per
// image sample the keys and values of its HR tokens (k_hr = rope_hr(hd·W'_Kᵀ), v_hr = hd·W'_Vᵀ; all M in the
// dense form, FlexPlan.Dense, the official implementation's cost; in the union form only those some row
// selected), the second softmax over its plain keys and the HR keys it selected of every real row (dense)
// or of the HR rows with a selection only (union: flexRows; their queries gathered), and
// o = (1 − α)·o + α·P_sel·[v; v_hr] on the HR rows with a selection. Both forms give the CPU's numbers up
// to the order of the sums. cells [B·N, G²] is the selection (the host's copy: it decides which rows and
// tokens take part).
func (d *Device) FlexAttention(o, q, k, v, wk, wv, hd Buffer, cells []float32, plan *ops.FlexPlan) (*Flex, error) {
	lay, W := plan.Layout, plan.Heads*plan.HeadDim
	G2 := plan.Cells.G * plan.Cells.G
	if wk.n != W*W || wv.n != W*W || hd.n != plan.B*plan.M*W || len(cells) != plan.B*plan.N*G2 {
		return nil, fmt.Errorf("gpu: FlexAttention: w %d and %d, hd %d, cells %d values do not fit the plan", wk.n, wv.n, hd.n, len(cells))
	}
	p, err := d.Attention(o, q, k, v, lay)
	if err != nil {
		return nil, err
	}
	f := &Flex{plan: plan, p: p, samples: make([]*flexSample, lay.B)}
	f.cells, err = newBuffer(d, cells)
	if err == nil && plan.Products == ops.BF16 { // the HR projections' weights, for the tensor cores
		if f.wk16, err = d.narrowBF16(Buffer{}, wk); err == nil {
			f.wv16, err = d.narrowBF16(Buffer{}, wv)
		}
	}
	for b := 0; b < lay.B && err == nil; b++ {
		if set := hrSetOf(plan, b, cells); set.rowsel != nil {
			f.samples[b], err = d.flexForward(f, b, set, o, q, k, v, wk, wv, hd)
		}
	}
	freeAll(d, f.wk16, f.wv16) // the backward pass does not read them
	f.wk16, f.wv16 = Buffer{}, Buffer{}
	if err != nil {
		f.Free(d)
		return nil, err
	}
	return f, nil
}

// flexForward is sample b's HR part: its HR rows with a selection (set.rowsel, among its L real rows) over
// the HR tokens of set.
func (d *Device) flexForward(f *Flex, b int, set hrSet, o, q, k, v, wk, wv, hd Buffer) (*flexSample, error) {
	rowsel := set.rowsel
	plan := f.plan
	H, dh, N, M, L, W := plan.Heads, plan.HeadDim, plan.N, len(set.tokens), plan.Lens[b], plan.Heads*plan.HeadDim
	s := &flexSample{rows: rowsel, computed: flexRows(plan, rowsel), u: M}
	R := len(s.computed)
	var err error
	for _, up := range []struct {
		dst *Buffer
		src []float32
	}{{&s.rowsel, rowsel}, {&s.cos, set.cos}, {&s.sin, set.sin}} {
		if err == nil {
			*up.dst, err = newBuffer(d, up.src)
		}
	}
	if err == nil {
		s.cellOf, err = newBuffer(d, set.cellOf)
	}
	if err == nil {
		s.index, err = newBuffer(d, s.computed)
	}
	for _, a := range []struct {
		dst *Buffer
		n   int
	}{{&s.pSel, H * R * (L + M)}, {&s.kHR, M * W}, {&s.vHR, M * W}, {&s.hd, M * W}, {&s.qR, R * W}} {
		if err == nil {
			*a.dst, err = d.Alloc(a.n)
		}
	}
	if err == nil { // the set's rows of the sample's HR features
		err = d.Assemble(s.hd, hd, Buffer{}, Buffer{}, hrSources(plan, b, set.tokens), W)
	}
	if err == nil && plan.Products == ops.BF16 { // rounded, as the CPU's forms round them: their bits only
		if s.hd16, err = d.narrowBF16(Buffer{}, s.hd); err == nil {
			d.Free(s.hd)
			s.hd = Buffer{}
		}
	}
	if err == nil { // the computed rows' queries
		err = d.Assemble(s.qR, q, Buffer{}, Buffer{}, sampleRows(b*N, s.computed), W)
	}
	if err != nil {
		s.free(d)
		return nil, err
	}
	row, hdb := b*N*W, mat{b: s.hd, ld: W}
	heads := func(x Buffer, off int, t bool) mat { return mat{b: x, off: off, ld: W, t: t, batchShift: dh} }
	sm := func(off int) mat { return mat{b: s.pSel, off: off, ld: L + M, batchShift: R * (L + M)} }
	mix, err := d.Alloc(R * W)
	if err != nil {
		s.free(d)
		return nil, err
	}
	defer d.Free(mix)
	scale := float32(1 / math.Sqrt(float64(dh)))
	project := func(w, w16, dst Buffer) func() error { // dst = hd·wᵀ
		if plan.Products == ops.BF16 {
			return func() error {
				return d.gemmBF16(mat{b: s.hd16, ld: W}, mat{b: w16, ld: W, t: true}, mat{b: dst, ld: W}, M, W, W, 0)
			}
		}
		return func() error { return d.gemm(hdb, mat{b: w, ld: W, t: true}, mat{b: dst, ld: W}, M, W, W, 1, 0, 1) }
	}
	steps := []func() error{
		project(wk, f.wk16, s.vHR), // k_hr before RoPE, in vHR for now
		func() error { return d.Rope(s.kHR, s.vHR, s.cos, s.sin, M, W, dh, false) },
		project(wv, f.wv16, s.vHR),
		func() error {
			return d.gemmIn(plan.Products, heads(s.qR, 0, false), heads(k, row, true), sm(0), R, L, dh, scale, 0, H)
		},
		func() error {
			return d.gemmIn(plan.Products, heads(s.qR, 0, false), heads(s.kHR, 0, true), sm(L), R, M, dh, scale, 0, H)
		},
		func() error {
			return d.launch("flex_softmax", Rows(H*R), s.pSel.ptr, f.cells.at(b*N*plan.Cells.G*plan.Cells.G), s.rowsel.ptr,
				s.cellOf.ptr, s.index.ptr, int64(R), int64(L), int64(M), int64(plan.Cells.G*plan.Cells.G), boolArg(plan.Full))
		},
		func() error {
			return d.gemmIn(plan.Products, sm(0), heads(v, row, false), heads(mix, 0, false), R, dh, L, 1, 0, H)
		},
		func() error {
			return d.gemmIn(plan.Products, sm(L), heads(s.vHR, 0, false), heads(mix, 0, false), R, dh, M, 1, 1, H)
		},
		func() error {
			return d.launch("flex_blend", Elementwise(R*W), o.at(row), mix.ptr, s.rowsel.ptr, s.index.ptr, int64(R*W), int64(W), plan.Alpha)
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			s.free(d)
			return nil, err
		}
	}
	if plan.Products == ops.BF16 { // the keys held in bfloat16 until the backward pass, as the CPU rounds them
		if s.kHR16, err = d.narrowBF16(Buffer{}, s.kHR); err != nil {
			s.free(d)
			return nil, err
		}
		d.Free(s.kHR)
		s.kHR = Buffer{}
	}
	return s, nil
}

// FlexAttentionGrad is the backward pass of FlexAttention: from the upstream gradient g, it sets dq, dk,
// dv, and dwk, dwv (the HR projections' gradients, each sample's added in sample order; empty buffers when
// they are frozen). The plain softmax goes back with each blended row's output weight 1 − α, the second
// softmax of each computed row on its own (its queries' gradient added back into dq's rows), as the CPU's
// forms do.
func (d *Device) FlexAttentionGrad(dq, dk, dv, dwk, dwv, q, k, v, hd, g Buffer, f *Flex) error {
	plan, lay := f.plan, f.plan.Layout
	N, W := plan.N, plan.Heads*plan.HeadDim
	weights := make([]float32, lay.B*N) // each row's plain output weight: 1 − α where it blends, else 1
	for i := range weights {
		weights[i] = 1
	}
	for b, s := range f.samples {
		for i, r := range rowsOf(s) {
			if r != 0 {
				weights[b*N+i] = float32(1 - plan.Alpha)
			}
		}
	}
	gw, err := d.scaleRows(g, weights, W)
	if err != nil {
		return err
	}
	defer d.Free(gw)
	if err := d.AttentionGrad(dq, dk, dv, q, k, v, gw, f.p, lay); err != nil {
		return err
	}
	for _, x := range []Buffer{dwk, dwv} {
		if x.n != 0 {
			if err := d.Zero(x); err != nil {
				return err
			}
		}
	}
	for b, s := range f.samples {
		if s == nil {
			continue
		}
		if err := d.flexBackward(f, b, s, dq, dk, dv, dwk, dwv, k, v, g); err != nil {
			return err
		}
	}
	return nil
}

// flexBackward adds sample b's HR part into dq, dk, dv and its HR weights' gradients into dwk, dwv.
func (d *Device) flexBackward(f *Flex, b int, s *flexSample, dq, dk, dv, dwk, dwv, k, v, g Buffer) error {
	plan := f.plan
	H, dh, N, M, L, W := plan.Heads, plan.HeadDim, plan.N, s.u, plan.Lens[b], plan.Heads*plan.HeadDim
	R := len(s.computed)
	row := b * N * W
	heads := func(x Buffer, off int, t bool) mat { return mat{b: x, off: off, ld: W, t: t, batchShift: dh} }
	sm := func(x Buffer, off int, t bool) mat {
		return mat{b: x, off: off, ld: L + M, t: t, batchShift: R * (L + M)}
	}
	var bufs []Buffer
	defer func() {
		for _, x := range bufs {
			d.Free(x)
		}
	}()
	alloc := func(n int) (Buffer, error) {
		x, err := d.Alloc(n)
		if err == nil {
			bufs = append(bufs, x)
		}
		return x, err
	}
	gr, err := alloc(R * W) // the computed rows' g times α on the blended rows, 0 on the others
	var ds, dqR, dkHR, dvHR, alphaRows Buffer
	if err == nil {
		err = d.Assemble(gr, g, Buffer{}, Buffer{}, sampleRows(b*N, s.computed), W)
	}
	if err == nil {
		alphaRows, err = newBuffer(d, scaled(rowsAt(s.rows, s.computed), float32(plan.Alpha)))
		bufs = append(bufs, alphaRows)
	}
	if err == nil {
		ds, err = alloc(H * R * (L + M))
	}
	if err == nil {
		dqR, err = alloc(R * W)
	}
	if err == nil {
		dkHR, err = alloc(M * W)
	}
	if err == nil {
		dvHR, err = alloc(M * W)
	}
	kHR := s.kHR
	if err == nil && s.kHR16.n > 0 { // widened for this pass only
		if kHR, err = alloc(M * W); err == nil {
			err = d.widenBF16(kHR, s.kHR16)
		}
	}
	if err != nil {
		return err
	}
	scale := float32(1 / math.Sqrt(float64(dh)))
	steps := []func() error{
		func() error {
			return d.launch("scale_rows", Elementwise(R*W), gr.ptr, gr.ptr, alphaRows.ptr, int64(R*W), int64(W))
		},
		func() error {
			return d.gemmIn(plan.Products, heads(gr, 0, false), heads(v, row, true), sm(ds, 0, false), R, L, dh, 1, 0, H)
		},
		func() error {
			return d.gemmIn(plan.Products, heads(gr, 0, false), heads(s.vHR, 0, true), sm(ds, L, false), R, M, dh, 1, 0, H)
		},
		func() error {
			return d.gemmIn(plan.Products, sm(s.pSel, 0, true), heads(gr, 0, false), heads(dv, row, false), L, dh, R, 1, 1, H)
		},
		func() error {
			return d.gemmIn(plan.Products, sm(s.pSel, L, true), heads(gr, 0, false), heads(dvHR, 0, false), M, dh, R, 1, 0, H)
		},
		func() error {
			return d.launch("attn_softmax_back", Rows(H*R), ds.ptr, s.pSel.ptr, int64(L+M), int64(L+M))
		},
		func() error {
			return d.gemmIn(plan.Products, sm(ds, 0, false), heads(k, row, false), heads(dqR, 0, false), R, dh, L, scale, 0, H)
		},
		func() error {
			return d.gemmIn(plan.Products, sm(ds, L, false), heads(kHR, 0, false), heads(dqR, 0, false), R, dh, M, scale, 1, H)
		},
		func() error {
			return d.launch("add_rows", Elementwise(R*W), dq.at(row), dqR.ptr, s.index.ptr, int64(R*W), int64(W))
		},
		func() error {
			return d.gemmIn(plan.Products, sm(ds, 0, true), heads(s.qR, 0, false), heads(dk, row, false), L, dh, R, scale, 1, H)
		},
		func() error {
			return d.gemmIn(plan.Products, sm(ds, L, true), heads(s.qR, 0, false), heads(dkHR, 0, false), M, dh, R, scale, 0, H)
		},
	}
	if dwk.n != 0 { // dW'_K += rope_hrᵀ(dk_hr)ᵀ·hd, dW'_V += dv_hrᵀ·hd
		steps = append(steps,
			func() error { return d.Rope(dkHR, dkHR, s.cos, s.sin, M, W, dh, true) },
			func() error { return d.hrWeightGrad(plan, s, dkHR, dwk, true) },
			func() error { return d.hrWeightGrad(plan, s, dvHR, dwv, plan.Dense) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// hrWeightGrad adds dxᵀ·hd, sample s's share of an HR projection's weight gradient, into dw. With Products
// BF16 the features are rounded already, and dx is rounded when round, as the CPU's forms round it (dk_hr;
// dv_hr in the dense form): the product then runs on the tensor cores in bfloat16, or in TF32 when dx stays
// unrounded; with native products, in float32.
func (d *Device) hrWeightGrad(plan *ops.FlexPlan, s *flexSample, dx, dw Buffer, round bool) error {
	M, W := s.u, plan.Heads*plan.HeadDim
	if plan.Products != ops.BF16 {
		return d.gemm(mat{b: dx, ld: W, t: true}, mat{b: s.hd, ld: W}, mat{b: dw, ld: W}, W, W, M, 1, 1, 1)
	}
	if !round { // TF32 (gemmIn) over the features widened from their bits
		hd, err := d.Alloc(M * W)
		if err != nil {
			return err
		}
		defer d.Free(hd)
		if err := d.widenBF16(hd, s.hd16); err != nil {
			return err
		}
		return d.gemmIn(plan.Products, mat{b: dx, ld: W, t: true}, mat{b: hd, ld: W}, mat{b: dw, ld: W}, W, W, M, 1, 1, 1)
	}
	dx16, err := d.narrowBF16(Buffer{}, dx)
	if err != nil {
		return err
	}
	defer d.Free(dx16)
	return d.gemmBF16(mat{b: dx16, ld: W, t: true}, mat{b: s.hd16, ld: W}, mat{b: dw, ld: W}, W, W, M, 1)
}

// Free releases the state.
func (f *Flex) Free(d *Device) {
	for _, s := range f.samples {
		if s != nil {
			s.free(d)
		}
	}
	freeAll(d, f.p, f.cells)
}

func (s *flexSample) free(d *Device) {
	freeAll(d, s.rowsel, s.cos, s.sin, s.cellOf, s.hd, s.hd16, s.index, s.qR, s.pSel, s.kHR, s.vHR, s.kHR16)
}

// sampleRows names rows off + r of a table (a sample's rows of [B·N, W]), for the assembly's gather.
func sampleRows(off int, rows []int64) []ops.Source {
	src := make([]ops.Source, len(rows))
	for i, r := range rows {
		src[i] = ops.Source{Kind: ops.FromToken, Index: off + int(r)}
	}
	return src
}

// freeAll frees the buffers that were allocated.
func freeAll(d *Device, bufs ...Buffer) {
	for _, b := range bufs {
		if b.n > 0 {
			d.Free(b)
		}
	}
}

// rowsOf is a sample's row flags, none for a sample without HR part.
func rowsOf(s *flexSample) []float32 {
	if s == nil {
		return nil
	}
	return s.rows
}

// scaleRows is a new buffer of src's rows of width values, row r times w[r].
func (d *Device) scaleRows(src Buffer, w []float32, width int) (Buffer, error) {
	wb, err := newBuffer(d, w)
	if err != nil {
		return Buffer{}, err
	}
	defer d.Free(wb)
	dst, err := d.Alloc(src.n)
	if err != nil {
		return Buffer{}, err
	}
	if err := d.launch("scale_rows", Elementwise(src.n), dst.ptr, src.ptr, wb.ptr, int64(src.n), int64(width)); err != nil {
		d.Free(dst)
		return Buffer{}, err
	}
	return dst, nil
}

// hrSources names the rows of sample b's HR features [B·M, W] at tokens, for the assembly's gather.
func hrSources(plan *ops.FlexPlan, b int, tokens []int) []ops.Source {
	src := make([]ops.Source, len(tokens))
	for i, u := range tokens {
		src[i] = ops.Source{Kind: ops.FromToken, Index: b*plan.M + u}
	}
	return src
}

// rowsAt is v at the rows idx.
func rowsAt(v []float32, idx []int64) []float32 {
	out := make([]float32, len(idx))
	for i, r := range idx {
		out[i] = v[r]
	}
	return out
}
