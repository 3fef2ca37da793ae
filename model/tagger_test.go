package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
)

// taggerCase is the golden train case's image samples with a random head over keys of 3 and 2 classes, the
// second answered by one image only.
func taggerCase(t *testing.T) (*Weights, *Batch[float64], Tagging) {
	t.Helper()
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	b := &Batch[float64]{}
	for i, px := range gc.batch.LRPixels {
		if px != nil {
			b.LRPixels, b.HRPixels = append(b.LRPixels, px), append(b.HRPixels, gc.batch.HRPixels[i])
			b.OriSizes = append(b.OriSizes, gc.batch.OriSizes[i])
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	head := make([]float64, 2*5*gc.cfg.Vision.HiddenSize)
	for i := range head {
		head[i] = rng.NormFloat64()
	}
	tg := Tagging{Head: tensor.New(tensor.WithShape(10, gc.cfg.Vision.HiddenSize), tensor.WithBacking(head)),
		Sizes: []int{3, 2}, Targets: [][]int{{2, 0}, {llava.IgnoreIndex, 1}}}
	return w, b, tg
}

func tagLoss(t *testing.T, w *Weights, b *Batch[float64], tg Tagging, trainable func(string) bool) (*Graph, float64) {
	t.Helper()
	m, err := BuildTagger(w, b, tg, Options{Trainable: trainable})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	return m, m.Loss()
}

// TestTaggerFiniteDifferences checks the tag objective's gradients (head and tower) against central
// differences of its loss (float64).
func TestTaggerFiniteDifferences(t *testing.T) {
	w, b, tg := taggerCase(t)
	m, _ := tagLoss(t, w, b, tg, isVision)
	grads := m.Grads()
	const eps = 1e-6
	check := func(name string, x, g []float64) {
		worst := 0.0
		for _, i := range []int{0, len(x) / 3, len(x) / 2, len(x) - 1} {
			orig := x[i]
			x[i] = orig + eps
			_, fp := tagLoss(t, w, b, tg, isVision)
			x[i] = orig - eps
			_, fm := tagLoss(t, w, b, tg, isVision)
			x[i] = orig
			num := (fp - fm) / (2 * eps)
			worst = math.Max(worst, math.Abs(num-g[i])/math.Max(1e-3, math.Abs(num)))
		}
		t.Logf("%s: worst relative error %.2e", name, worst)
		if worst > 1e-5 {
			t.Errorf("%s: gradient differs from finite differences by %.2e", name, worst)
		}
	}
	for _, name := range []string{TagHeadName, VisionPrefix + "embeddings.patch_embedding.weight",
		VisionPrefix + "encoder.layers.0.self_attn.v_proj.weight", VisionPrefix + "pre_layrnorm.bias"} {
		g := grads[name]
		if g == nil {
			t.Fatalf("%s has no gradient", name)
		}
		x := tg.Head.Data().([]float64)
		if name != TagHeadName {
			x = w.Get(name).Data().([]float64)
		}
		check(name, x, g.Data().([]float64))
	}
	for name := range grads {
		if name != TagHeadName && !isVision(name) {
			t.Errorf("%s outside the tower got a gradient", name)
		}
	}
}

func TestTaggerErrors(t *testing.T) {
	w, b, tg := taggerCase(t)
	if _, err := BuildTagger(w, b, tg, Options{Trainable: func(string) bool { return false }}); err == nil {
		t.Error("frozen tower: no error")
	}
	bad := tg
	bad.Targets = [][]int{{3, 0}, {llava.IgnoreIndex, 1}}
	if _, err := BuildTagger(w, b, bad, Options{Trainable: isVision}); err == nil {
		t.Error("target outside its key's classes: no error")
	}
	bad = tg
	bad.Head = tensor.New(tensor.WithShape(10, 2), tensor.WithBacking(make([]float32, 20)))
	if _, err := BuildTagger(w, b, bad, Options{Trainable: isVision}); err == nil {
		t.Error("float32 head for float64 weights: no error")
	}
}

func TestTagLogits(t *testing.T) {
	// K = 2 images, keys of 2 and 1 classes: logits [4, 6], entry (r, c) = 10r + c.
	logits := make([]float64, 4*6)
	for i := range logits {
		logits[i] = float64(10*(i/6) + i%6)
	}
	for _, c := range []struct {
		pool, k, h int
		want       []float64
	}{{0, 0, 0, []float64{0, 1}}, {0, 1, 1, []float64{12}}, {1, 0, 0, []float64{23, 24}}, {1, 1, 1, []float64{35}}} {
		if got := TagLogits(logits, 2, []int{2, 1}, c.pool, c.k, c.h); !slices.Equal(got, c.want) {
			t.Errorf("TagLogits(pool %d, image %d, key %d) = %v; want %v", c.pool, c.k, c.h, got, c.want)
		}
	}
}
