//go:build gpu

package gpu

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"

	"github.com/flextrain/flextrain/model/ops"
)

// ImageAttention is the selection's map on the device (ops.Select's first half): for each HR row of each
// sample (plan.Rows), its attention on the sample's n image tokens, summed over the heads, from this
// layer's queries and keys q, k [B·N, H·dh]. Every sample's map is queued before any comes down, so the host
// waits for the device once; only the maps come down, a few values per HR row; nil for a sample without HR
// rows.
func (d *Device) ImageAttention(q, k Buffer, plan *ops.SelectPlan) ([][][]float64, error) {
	lay := plan.Layout
	W, n := lay.Heads*lay.HeadDim, plan.Grid*plan.Grid
	if q.n != lay.B*lay.N*W || k.n != q.n {
		return nil, fmt.Errorf("gpu: ImageAttention: q %d and k %d values for [%d, %d]", q.n, k.n, lay.B*lay.N, W)
	}
	maps := make([]Buffer, lay.B)
	defer func() { freeAll(d, maps...) }()
	for b := range lay.B {
		if len(plan.Rows[b]) == 0 {
			continue
		}
		var err error
		if maps[b], err = d.sampleAttention(q, k, plan, b, n); err != nil {
			return nil, err
		}
	}
	att := make([][][]float64, lay.B)
	for b, m := range maps {
		if m.n == 0 {
			continue
		}
		flat, err := readBuffer[float64](d, m)
		if err != nil {
			return nil, err
		}
		att[b] = make([][]float64, len(plan.Rows[b]))
		for i := range att[b] {
			att[b][i] = flat[i*n : (i+1)*n]
		}
	}
	return att, nil
}

// sampleAttention queues sample b's map [R][n] (float64, in a buffer of 2·R·n values): its R HR rows'
// queries gathered, the scores of every head against the sample's L keys in one batched product, each row's
// softmax over the keys it sees, and the heads' probabilities on the image tokens summed.
func (d *Device) sampleAttention(q, k Buffer, plan *ops.SelectPlan, b, n int) (Buffer, error) {
	lay := plan.Layout
	H, dh, W, L, R := lay.Heads, lay.HeadDim, lay.Heads*lay.HeadDim, lay.Lens[b], len(plan.Rows[b])
	src := make([]ops.Source, R)
	for i, r := range plan.Rows[b] {
		src[i] = ops.Source{Kind: ops.FromToken, Index: b*lay.N + r}
	}
	qr, err := d.Alloc(R * W)
	if err != nil {
		return Buffer{}, err
	}
	defer d.Free(qr)
	s, err := d.Alloc(H * R * L)
	if err != nil {
		return Buffer{}, err
	}
	defer d.Free(s)
	keys, err := newBuffer(d, selectKeys(plan, b))
	if err != nil {
		return Buffer{}, err
	}
	defer d.Free(keys)
	out, err := d.Alloc(2 * R * n) // float64
	if err != nil {
		return Buffer{}, err
	}
	scale := float32(1 / math.Sqrt(float64(dh)))
	steps := []func() error{
		func() error { return d.Assemble(qr, q, Buffer{}, Buffer{}, src, W) },
		func() error {
			return d.gemm(mat{b: qr, ld: W, batchShift: dh}, mat{b: k, off: b * lay.N * W, ld: W, t: true, batchShift: dh},
				mat{b: s, ld: L, batchShift: R * L}, R, L, dh, scale, 0, H)
		},
		func() error { return d.launch("rows_softmax", Rows(H*R), s.ptr, keys.ptr, int64(R), int64(L)) },
		func() error {
			return d.launch("image_attention", Elementwise(R*n), out.ptr, s.ptr, keys.ptr, int64(H), int64(R), int64(L),
				int64(plan.ImageAt[b]), int64(n))
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			d.Free(out)
			return Buffer{}, err
		}
	}
	return out, nil
}

// selectCells is the selection over in = q, k (ops.Select): the map on the device, the cells chosen from it
// on the host (ops.SelectFrom: thresholds, top-k, the strategies' draws), and the cells put back on the
// device for the next FlexAttention layer.
func selectCells(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	plan, b, err := inputsOf[*ops.SelectPlan](k, in)
	if err != nil {
		return nil, err
	}
	att, err := g.d.ImageAttention(b[0], b[1], plan)
	if err != nil {
		return nil, err
	}
	if plan.Attention != nil { // the front cache keeps layer n_sa − 1's map
		copy(plan.Attention, att)
	}
	G2 := plan.Cells * plan.Cells
	cells := make([]float32, plan.B*plan.N*G2)
	if err := ops.SelectFrom(plan, att, cells); err != nil {
		return nil, err
	}
	y, out, err := g.output(plan.B*plan.N, G2)
	if err == nil {
		err = g.d.Upload(y, cells)
	}
	if err == nil {
		g.known[y.ptr] = cells // FlexAttention reads them on the host: no download
	}
	return out, err
}
