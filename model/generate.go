package model

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model/ops"
)

// Generate continues every sample of the batch greedily by up to maxNew tokens, stopping after eos, never
// choosing a suppressed id. Each new row is the last row, the only one that sees HR tokens (FlexAttention's
// inference mode, docs/DESIGN.md §7); the plain keys and values of every layer are cached, so each token
// costs one row of work.
func Generate[P ops.Float](w *Weights, b *Batch[P], maxNew, eos int, alpha float64, suppress []int) ([][]int, error) {
	if err := b.Validate(w.Config()); err != nil {
		return nil, err
	}
	out, skip := make([][]int, b.Len()), idSet(suppress)
	for s := range b.InputIDs {
		d, err := NewDecoder(w, b, s, alpha)
		if err != nil {
			return nil, err
		}
		d.suppress = skip
		if out[s], err = d.Greedy(d.Prefill(), maxNew, eos); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// argmax is the index of x's largest value other than those of skip (the first of equal ones); with
// every index skipped it is 0.
func argmax(x []float64, skip map[int]bool) int {
	best := -1
	for i, v := range x {
		if !skip[i] && (best < 0 || v > x[best]) {
			best = i
		}
	}
	return max(best, 0)
}

// Decoder runs one sample row by row with a KV cache. Its element type is the weights' dtype.
type Decoder struct {
	suppress map[int]bool // ids Greedy never chooses
	prefill  func() []float64
	step     func(token int) ([]float64, error)
	selected func() [][]bool
	maps     func() [][]float64
}

// NewDecoder prepares sample s of the batch for decoding with blend weight alpha.
func NewDecoder[P ops.Float](w *Weights, b *Batch[P], s int, alpha float64) (*Decoder, error) {
	if err := w.Config().Validate(); err != nil {
		return nil, err
	}
	if s < 0 || s >= b.Len() {
		return nil, fmt.Errorf("model: decode: sample %d of a batch of %d", s, b.Len())
	}
	if w.Dtype().Name() == "float32" {
		return newDecoder[float32](w, b, s, alpha), nil
	}
	return newDecoder[float64](w, b, s, alpha), nil
}

// Prefill runs the prompt and returns the logits of its last row.
func (d *Decoder) Prefill() []float64 { return d.prefill() }

// Step appends a token and returns the logits of the new last row.
func (d *Decoder) Step(token int) ([]float64, error) { return d.step(token) }

// Suppress keeps Greedy from choosing ids: tokens a vocabulary holds that are not text, such as llava-hf's
// "<image>" and "<pad>" or the rows that pad a vocabulary to a multiple of 64.
func (d *Decoder) Suppress(ids []int) { d.suppress = idSet(ids) }

// idSet is the set of ids.
func idSet(ids []int) map[int]bool {
	set := make(map[int]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// Greedy continues from the last row's logits by up to maxNew tokens, each the argmax of the row before
// (suppressed ids left out), stopping after eos (which it returns).
func (d *Decoder) Greedy(logits []float64, maxNew, eos int) ([]int, error) {
	var out []int
	for len(out) < maxNew {
		next := argmax(logits, d.suppress)
		out = append(out, next)
		if next == eos {
			break
		}
		var err error
		if logits, err = d.Step(next); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Selected returns the cells the last row run attended to in each FlexAttention layer n_sa…L−1 (G×G,
// row-major; docs/DESIGN.md §8): after Prefill, those of the row that predicts the answer's first token. They are
// nil for a text-only sample.
func (d *Decoder) Selected() [][]bool { return d.selected() }

// AttentionMaps returns, per FlexAttention layer n_sa…L−1, the image attention its selection ranked: the
// previous layer's attention of the last HR row over the LR image tokens, summed over heads, [g·g]
// row-major (the margin of a padded image included); nil before Prefill or without an image.
func (d *Decoder) AttentionMaps() [][]float64 { return d.maps() }

// rowDecoder holds one sample's cache in element type T.
type rowDecoder[T ops.Float] struct {
	cfg     Config
	w       params[T]
	alpha   float64
	rows    [][]T // the prompt's input rows [D] (LR features in place of the image id)
	kc, vc  [][]T // per layer, cached rotated keys and values [pos, D]
	cos     []T   // RoPE tables [rows, dh] of the rows being run, shared by their layers
	sin     []T
	hd      []T // HR features [M, D], nil for text-only samples and for α = 0 (the LR view)
	hcos    []float64
	hsin    []float64
	imageAt int
	image   ops.Image // the original size and the oracle's box
	pos     int
	// imageKey seeds the random strategy's generator: a hash of the image's LR pixels, so that each image
	// draws its own cells however it is batched (a prompt decoded alone is always sample 0).
	imageKey uint64
	used     [][]bool    // per FlexAttention layer, the cells the last HR row attended to
	maps     [][]float64 // per FlexAttention layer, the image attention its cells were chosen from
}

func newDecoder[T, P ops.Float](w *Weights, b *Batch[P], s int, alpha float64) *Decoder {
	cfg := w.Config()
	d := &rowDecoder[T]{cfg: cfg, alpha: alpha, imageAt: -1, image: ops.Image{Size: b.OriSizes[s]},
		w:  params[T]{w: w},
		kc: make([][]T, cfg.Text.NumLayers), vc: make([][]T, cfg.Text.NumLayers)}
	if b.Boxes != nil {
		d.image.Box = b.Boxes[s]
	}
	assemble(d, b, s)
	return &Decoder{prefill: d.prefill, step: d.step, selected: func() [][]bool { return d.used },
		maps: func() [][]float64 { return d.maps }}
}

// assemble lays out the prompt's input rows (docs/DESIGN.md §5) and, with an image, its HR features and tables.
func assemble[T, P ops.Float](d *rowDecoder[T], b *Batch[P], s int) {
	D := d.cfg.Text.HiddenSize
	g, n, zg, M := d.cfg.Grid()
	for t, id := range b.InputIDs[s] {
		if b.AttentionMask[s][t] == 0 {
			continue
		}
		if id != llava.ImageTokenID {
			d.rows = append(d.rows, d.w.row("model.embed_tokens.weight", id))
			continue
		}
		d.imageAt = len(d.rows)
		d.imageKey = pixelHash(b.LRPixels[s])
		lr := project(nil, d.cfg, d.w, visionFeatures(nil, d.cfg, d.w, ops.Convert[T](nil, b.LRPixels[s]), 1), n)
		for i := 0; i < n; i++ {
			d.rows = append(d.rows, lr[i*D:(i+1)*D])
		}
		if d.alpha == 0 { // the LR view, LLaVA-1.5's: HR tokens would enter with weight 0, so none is computed
			continue
		}
		d.hd = make([]T, M*D)
		hrFeatures(nil, d.cfg, d.w, hrTower(nil, d.cfg, d.w, ops.Convert[T](nil, b.HRPixels[s])), d.hd)
	}
	if d.hd != nil {
		cos, sin := ops.RopeTables(d.imageAt+n, d.cfg.HeadDim(), d.cfg.Text.RopeTheta)
		d.hcos, d.hsin = hrRopeTables(nil, cos, sin, d.imageAt, g, zg, d.cfg.HeadDim())
	}
}

// prefill runs the prompt and returns the logits of its last row: every row but the last together, a layer
// at a time, so that each weight is read once for all of them; then the last row, the only one that sees
// HR tokens.
func (d *rowDecoder[T]) prefill() []float64 {
	last := len(d.rows) - 1
	if last < 0 {
		return nil // no row to run (the batch's checks keep a prompt from being empty)
	}
	if last > 0 {
		d.run(d.rows[:last], false)
	}
	return d.logits(d.run(d.rows[last:], true))
}

func (d *rowDecoder[T]) step(token int) ([]float64, error) {
	if token < 0 || token >= d.cfg.Text.VocabSize {
		return nil, fmt.Errorf("model: decode: token %d outside the vocabulary of %d", token, d.cfg.Text.VocabSize)
	}
	return d.logits(d.run([][]T{d.w.row("model.embed_tokens.weight", token)}, true)), nil
}

// run takes rows at the next positions through every layer and returns the last one's output [D]. hr
// says whether the rows, then one row (the prompt's last, or a new token), see HR tokens (when the sample
// has an image and α is not 0).
func (d *rowDecoder[T]) run(rows [][]T, hr bool) []T {
	hr = hr && d.hd != nil
	D, dh, R := d.cfg.Text.HiddenSize, d.cfg.HeadDim(), len(rows)
	h := make([]T, R*D)
	d.cos, d.sin = make([]T, R*dh), make([]T, R*dh)
	for i, r := range rows {
		copy(h[i*D:], r)
		c, sn := ops.RopeAt(d.pos+i, dh, d.cfg.Text.RopeTheta)
		copy(d.cos[i*dh:], ops.Convert[T](nil, c))
		copy(d.sin[i*dh:], ops.Convert[T](nil, sn))
	}
	var cells []bool
	for l := 0; l < d.cfg.Text.NumLayers; l++ {
		cells = d.layer(l, h, R, hr, cells)
	}
	d.pos += R
	return h[(R-1)*D:]
}

// logits are lm_head(norm(h)) of one row h [D].
func (d *rowDecoder[T]) logits(h []T) []float64 {
	D, V := d.cfg.Text.HiddenSize, d.cfg.Text.VocabSize
	y := make([]T, D)
	ops.RMSNormRows(y, h, d.w.vec("model.norm.weight"), d.cfg.Text.RMSNormEps)
	logits := make([]T, V)
	d.w.mulNT(logits, y, "lm_head.weight", 1)
	out := make([]float64, V)
	for i, v := range logits {
		out[i] = float64(v)
	}
	return out
}

// layer updates the R rows h [R, D] in place through decoder layer l and returns the cells the last row
// selects for layer l+1.
func (d *rowDecoder[T]) layer(l int, h []T, R int, hr bool, cells []bool) []bool {
	p := fmt.Sprintf("model.layers.%d.", l)
	D, H, eps := d.cfg.Text.HiddenSize, d.cfg.Text.NumHeads, d.cfg.Text.RMSNormEps
	x := make([]T, R*D)
	ops.RMSNormRows(x, h, d.w.vec(p+"input_layernorm.weight"), eps)
	q, k, v := d.rotate(x, p+"self_attn.q_proj.weight", R), d.rotate(x, p+"self_attn.k_proj.weight", R), make([]T, R*D)
	d.w.mulNT(v, x, p+"self_attn.v_proj.weight", R)
	d.kc[l], d.vc[l] = append(d.kc[l], k...), append(d.vc[l], v...)
	var kHR, vHR []T
	if hr && l >= d.cfg.Flex.NSA {
		kHR, vHR = d.hrKeys(p, cells)
		d.record(l, cells)
	}
	o := make([]T, R*D)
	var probs []T
	for i := range R { // row i sees the keys up to its own position; the last row's probabilities stay in probs
		keys := d.pos + i + 1
		probs = make([]T, H*keys)
		ops.AttendRow(o[i*D:(i+1)*D], q[i*D:(i+1)*D], d.kc[l][:keys*D], d.vc[l][:keys*D], H, kHR, vHR, d.alpha, probs)
	}
	var next []bool
	if hr && l >= d.cfg.Flex.NSA-1 && l < d.cfg.Text.NumLayers-1 {
		next = d.selectCells(l, probs)
	}
	y := make([]T, R*D)
	d.w.mulNT(y, o, p+"self_attn.o_proj.weight", R)
	ops.AddTo(h, y)
	d.mlp(p, h, R)
	return next
}

// record keeps the cells of FlexAttention layer l as the last HR row's selection.
func (d *rowDecoder[T]) record(l int, cells []bool) {
	if d.used == nil {
		d.used = make([][]bool, d.cfg.Text.NumLayers-d.cfg.Flex.NSA)
	}
	d.used[l-d.cfg.Flex.NSA] = cells
}

// pixelHash is the FNV-1a hash of the pixels' float64 bits (float32 pixels widened: the same hash as the
// float64 pixels of the same values).
func pixelHash[P ops.Float](px []P) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	for _, v := range px {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(float64(v)))
		h.Write(buf[:])
	}
	return h.Sum64()
}

// rotate is RoPE(x·Wᵀ) for the R rows x [R, D] at their positions (the tables d.cos, d.sin).
func (d *rowDecoder[T]) rotate(x []T, name string, R int) []T {
	D, dh := d.cfg.Text.HiddenSize, d.cfg.HeadDim()
	y, out := make([]T, R*D), make([]T, R*D)
	d.w.mulNT(y, x, name, R)
	for i := range R {
		cos, sin := d.cos[i*dh:(i+1)*dh], d.sin[i*dh:(i+1)*dh]
		for h := i * D; h < (i+1)*D; h += dh {
			ops.RopeRow(out[h:h+dh], y[h:h+dh], cos, sin, false)
		}
	}
	return out
}

// hrKeys projects the HR tokens of the selected cells: k_hr with HR RoPE, v_hr (docs/DESIGN.md §7).
func (d *rowDecoder[T]) hrKeys(p string, cells []bool) ([]T, []T) {
	_, _, zg, _ := d.cfg.Grid()
	toks := ops.CellGrid{G: d.cfg.Flex.SelectGrid, Zg: zg}.Tokens(func(i int) bool { return cells[i] })
	if len(toks) == 0 {
		return nil, nil
	}
	D, dh := d.cfg.Text.HiddenSize, d.cfg.HeadDim()
	hdU := make([]T, len(toks)*D)
	for i, t := range toks {
		copy(hdU[i*D:(i+1)*D], d.hd[t*D:(t+1)*D])
	}
	pre, kHR, vHR := make([]T, len(hdU)), make([]T, len(hdU)), make([]T, len(hdU))
	d.w.mulNT(pre, hdU, p+"self_attn.k_proj_hd.weight", len(toks))
	d.w.mulNT(vHR, hdU, p+"self_attn.v_proj_hd.weight", len(toks))
	cos, sin := ops.Convert[T](nil, d.hcos), ops.Convert[T](nil, d.hsin)
	for i, t := range toks {
		for h := 0; h < D; h += dh {
			ops.RopeRow(kHR[i*D+h:i*D+h+dh], pre[i*D+h:i*D+h+dh], cos[t*dh:(t+1)*dh], sin[t*dh:(t+1)*dh], false)
		}
	}
	return kHR, vHR
}

// selectCells runs docs/DESIGN.md §8 on this row's plain attention of layer l over the LR image columns.
func (d *rowDecoder[T]) selectCells(l int, probs []T) []bool {
	g, n, _, _ := d.cfg.Grid()
	keys := d.pos + 1
	a := make([]float64, n)
	for h := 0; h < d.cfg.Text.NumHeads; h++ {
		for t := 0; t < n; t++ {
			a[t] += float64(probs[h*keys+d.imageAt+t])
		}
	}
	f := d.cfg.Flex
	if d.maps == nil {
		d.maps = make([][]float64, d.cfg.Text.NumLayers-f.NSA)
	}
	d.maps[l+1-f.NSA] = slices.Clone(a)
	var rng *rand.Rand
	if f.Strategy == "random" {
		rng = rand.New(rand.NewPCG(d.imageKey, ops.RandomStream(0, 0, l)))
	}
	cells, err := ops.SelectCells(a, g, f.SelectGrid, d.image, f.Threshold, f.Strategy, f.Ratio, rng)
	if err != nil { // the configuration was validated: the strategy is known
		return make([]bool, f.SelectGrid*f.SelectGrid)
	}
	return cells
}

// mlp is h += down(silu(gate(y)) ⊙ up(y)) with y = post_attention_layernorm(h), for the R rows h [R, D].
func (d *rowDecoder[T]) mlp(p string, h []T, R int) {
	D, F := d.cfg.Text.HiddenSize, d.cfg.Text.IntermediateSize
	y, gate, up, out := make([]T, R*D), make([]T, R*F), make([]T, R*F), make([]T, R*D)
	ops.RMSNormRows(y, h, d.w.vec(p+"post_attention_layernorm.weight"), d.cfg.Text.RMSNormEps)
	d.w.mulNT(gate, y, p+"mlp.gate_proj.weight", R)
	d.w.mulNT(up, y, p+"mlp.up_proj.weight", R)
	ops.SwiGLUInPlace(gate, up)
	d.w.mulNT(out, gate, p+"mlp.down_proj.weight", R)
	ops.AddTo(h, out)
}
