package model

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
)

// defaultTrainable is docs/DESIGN.md §9's default: layers n_sa…L−1, model.norm and lm_head.
func defaultTrainable(cfg Config) func(string) bool {
	return func(name string) bool {
		var l int
		if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err == nil {
			return l >= cfg.Flex.NSA
		}
		return strings.HasPrefix(name, "model.norm.") || strings.HasPrefix(name, "lm_head.")
	}
}

func goldenTrainCase(t *testing.T) *goldenCase {
	return loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_train.safetensors"))
}

func runLoss(t *testing.T, w *Weights, b *Batch[float64], opt Options) (*Graph, float64) {
	t.Helper()
	m, err := Build(w, b, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	return m, m.Loss()
}

// TestFlexLayerFiniteDifferences checks the gradient of every weight of the first FlexAttention layer of the
// tiny model against central differences of the whole model's loss, in float64, on a few entries each.
func TestFlexLayerFiniteDifferences(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{Mode: Train, Alpha: 0.5, Trainable: defaultTrainable(gc.cfg)}
	m, _ := runLoss(t, w, gc.batch, opt)
	grads := m.Grads()
	l := gc.cfg.Flex.NSA
	const eps = 1e-6
	for _, suffix := range []string{"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
		"self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.k_proj_hd.weight", "self_attn.v_proj_hd.weight",
		"post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"} {
		name := fmt.Sprintf("model.layers.%d.%s", l, suffix)
		x := w.Get(name).Data().([]float64)
		g := grads[name].Data().([]float64)
		worst := 0.0
		for _, i := range []int{0, 7, len(x) / 3, len(x) / 2, len(x) - 1} {
			orig := x[i]
			x[i] = orig + eps
			_, fp := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5})
			x[i] = orig - eps
			_, fm := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5})
			x[i] = orig
			num := (fp - fm) / (2 * eps)
			worst = math.Max(worst, math.Abs(num-g[i])/math.Max(1e-3, math.Abs(num)))
		}
		t.Logf("%s: worst relative error %.2e", name, worst)
		if worst > 1e-5 {
			t.Errorf("%s: gradient differs from finite differences by %.2e", name, worst)
		}
	}
}

// TestFrozenPrefixHasNoBackward checks that with the default trainable set no backward work reaches the
// vision tower, projector, embeddings or layers 0…n_sa−1, and that only trainable weights get gradients.
func TestFrozenPrefixHasNoBackward(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float32, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	trainable := defaultTrainable(gc.cfg)
	m, _ := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: trainable})
	for name := range m.Grads() {
		if !trainable(name) {
			t.Errorf("frozen %s got a gradient", name)
		}
	}
	if m.lr != nil && m.needs[m.lr] {
		t.Error("the projected LR features need a gradient")
	}
	counts := map[string]int{}
	for _, n := range m.g.AllNodes() {
		if op := n.Op(); op != nil {
			counts[op.String()]++
		}
	}
	L, nSA := gc.cfg.Text.NumLayers, gc.cfg.Flex.NSA
	want := map[string]int{"AssembleGrad": 0, "AttentionGrad": 0, "FlexAttentionGrad": L - nSA,
		"LinearGradW": 7*(L-nSA) + 1, "RMSNormGradW": 2*(L-nSA) + 1, "RopeGrad": 2 * (L - nSA)}
	for op, n := range want {
		if counts[op] != n {
			t.Errorf("%d %s nodes; want %d", counts[op], op, n)
		}
	}
}

// TestBadInputIsAnError feeds malformed batches and expects an error naming the problem, never a panic.
func TestBadInputIsAnError(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float32, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		spoil func(b *Batch[float64])
		want  string
	}{
		{"token id past the vocabulary", func(b *Batch[float64]) { b.InputIDs[0][0] = 96 }, "outside the vocabulary"},
		{"negative token id", func(b *Batch[float64]) { b.InputIDs[2][1] = -7 }, "outside the vocabulary"},
		{"label past the vocabulary", func(b *Batch[float64]) { b.Labels[1][10] = 1000 }, "label 1000"},
		{"two images", func(b *Batch[float64]) { b.InputIDs[0][1] = llava.ImageTokenID }, "2 images"},
		{"short LR pixels", func(b *Batch[float64]) { b.LRPixels[0] = b.LRPixels[0][:10] }, "LR pixels"},
		{"missing HR pixels", func(b *Batch[float64]) { b.HRPixels[1] = nil }, "HR pixels"},
		{"ragged mask", func(b *Batch[float64]) { b.AttentionMask[1] = b.AttentionMask[1][:3] }, "mask entries"},
		{"fewer sizes", func(b *Batch[float64]) { b.OriSizes = b.OriSizes[:1] }, "sizes"},
		{"empty", func(b *Batch[float64]) { *b = Batch[float64]{} }, "no samples"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := copyBatch(gc.batch)
			c.spoil(b)
			_, err := Build(w, b, Options{Mode: Train, Alpha: 1})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v; want one containing %q", err, c.want)
			}
		})
	}
}

func copyBatch(b *Batch[float64]) *Batch[float64] {
	c := &Batch[float64]{OriSizes: append([][2]int(nil), b.OriSizes...)}
	for i := range b.InputIDs {
		c.InputIDs = append(c.InputIDs, append([]int(nil), b.InputIDs[i]...))
		c.AttentionMask = append(c.AttentionMask, append([]int(nil), b.AttentionMask[i]...))
		c.Labels = append(c.Labels, append([]int(nil), b.Labels[i]...))
		c.LRPixels = append(c.LRPixels, b.LRPixels[i])
		c.HRPixels = append(c.HRPixels, b.HRPixels[i])
	}
	return c
}

// TestInferAnyBatchSize checks that inference on one sample gives the same last-row logits as in the batch.
func TestInferAnyBatchSize(t *testing.T) {
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_infer.safetensors"))
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := runLoss(t, w, gc.batch, Options{Mode: Infer, Alpha: 1})
	_, N := all.Shape()
	V := gc.cfg.Text.VocabSize
	for s := 0; s < gc.batch.Len(); s++ {
		one := &Batch[float64]{InputIDs: gc.batch.InputIDs[s : s+1], AttentionMask: gc.batch.AttentionMask[s : s+1],
			Labels: gc.batch.Labels[s : s+1], LRPixels: gc.batch.LRPixels[s : s+1], HRPixels: gc.batch.HRPixels[s : s+1],
			OriSizes: gc.batch.OriSizes[s : s+1]}
		m, _ := runLoss(t, w, one, Options{Mode: Infer, Alpha: 1})
		last := all.Lens()[s] - 1
		got := m.Logits().Data().([]float64)[last*V : (last+1)*V]
		want := all.Logits().Data().([]float64)[(s*N+last)*V : (s*N+last+1)*V]
		if e := relErr(got, want, nil); e > 1e-12 {
			t.Errorf("sample %d alone: last-row logits differ by %.2e", s, e)
		}
	}
}

// TestDenseEqualsUnion checks the dense FlexAttention baseline against the union form on the tiny model in
// float64: same loss and gradients up to summation order.
func TestDenseEqualsUnion(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	all := func(string) bool { return true }
	union, lu := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: all})
	dense, ld := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: all, Dense: true})
	if math.Abs(lu-ld) > 1e-12 {
		t.Errorf("loss: union %.17g, dense %.17g", lu, ld)
	}
	gd := dense.Grads()
	for name, g := range union.Grads() {
		// A key bias has no gradient (it shifts a row's scores together): both are rounding noise, ~1e-22.
		if zero := 1e-18; norm(floatsOf(g)) < zero && norm(floatsOf(gd[name])) < zero {
			continue
		}
		if e := relErr(floatsOf(gd[name]), floatsOf(g), nil); e > 1e-12 {
			t.Errorf("%s: dense and union gradients differ by %.2e", name, e)
		}
	}
}

// TestViews runs the two baselines: LR only (no HR anywhere) and every HR token in the sequence.
func TestViews(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, M := gc.cfg.Grid()
	_, flexLoss := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 1})
	lr, lrLoss := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 1, View: ViewLR})
	hd, hdLoss := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 1, View: ViewHDSeq})
	_, lrN := lr.Shape()
	_, hdN := hd.Shape()
	if hdN != lrN+M {
		t.Errorf("hd-seq length %d; want the LR length %d plus %d HR tokens", hdN, lrN, M)
	}
	if lrLoss == flexLoss || hdLoss == flexLoss || math.IsNaN(lrLoss) || math.IsNaN(hdLoss) {
		t.Errorf("losses flex %.6f, lr %.6f, hd-seq %.6f: the views must differ and be finite", flexLoss, lrLoss, hdLoss)
	}
	// Alpha 0 makes FlexAttention plain attention: the flex view then equals the LR view exactly.
	_, zero := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0})
	if zero != lrLoss {
		t.Errorf("alpha 0: loss %.17g; want the LR view's %.17g", zero, lrLoss)
	}
}

// norm is the Euclidean norm of x.
func norm(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return math.Sqrt(s)
}
