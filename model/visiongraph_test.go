package model

import (
	"math"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

func trainAll(string) bool { return true }

// TestVisionGraphMatchesPlainTower checks that the trainable tower built in the graph gives the plain tower's
// projected LR features, loss and decoder gradients (float64), and that it alone gives the tower gradients.
func TestVisionGraphMatchesPlainTower(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	notVision := func(name string) bool { return !isVision(name) }
	plain, plainLoss := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: notVision})
	graph, graphLoss := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: trainAll})
	if e := relErr(floatsOf(graph.LRFeatures()), floatsOf(plain.LRFeatures()), nil); e > 1e-12 {
		t.Errorf("LR features differ by %.2e; want ≤ 1e-12", e)
	}
	if math.Abs(graphLoss-plainLoss) > 1e-12*math.Abs(plainLoss) {
		t.Errorf("loss %.17g; want the plain tower's %.17g", graphLoss, plainLoss)
	}
	pg, gg := plain.Grads(), graph.Grads()
	for name, d := range pg {
		if e := relErr(floatsOf(gg[name]), floatsOf(d), nil); e > 1e-10 {
			t.Errorf("%s: gradient differs by %.2e from the plain tower's run", name, e)
		}
	}
	for _, name := range w.Names() {
		if _, ok := gg[name]; isVision(name) && !strings.Contains(name, "layers.") && !ok {
			t.Errorf("%s has no gradient with the tower trainable", name)
		}
	}
}

// TestVisionGraphFiniteDifferences checks the gradients of tower weights against central differences of
// the whole model's loss (float64), a few entries each, across the embeddings, norms, attention and MLP. The
// LR view keeps the HR features (constants of the same tower, no gradient) out of the loss.
func TestVisionGraphFiniteDifferences(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := runLoss(t, w, gc.batch, Options{Mode: Train, View: ViewLR, Trainable: isVision})
	grads := m.Grads()
	const eps = 1e-6
	for _, suffix := range []string{"embeddings.patch_embedding.weight", "embeddings.class_embedding",
		"embeddings.position_embedding.weight", "pre_layrnorm.weight", "pre_layrnorm.bias",
		"encoder.layers.0.layer_norm1.weight", "encoder.layers.0.self_attn.q_proj.weight",
		"encoder.layers.0.self_attn.k_proj.weight", "encoder.layers.0.self_attn.v_proj.weight",
		"encoder.layers.0.self_attn.out_proj.weight", "encoder.layers.0.mlp.fc1.weight", "encoder.layers.0.mlp.fc2.bias"} {
		name := VisionPrefix + suffix
		x, g := w.Get(name).Data().([]float64), grads[name]
		if g == nil {
			t.Fatalf("%s has no gradient", name)
		}
		worst := 0.0
		for _, i := range []int{0, len(x) / 3, len(x) - 1} {
			orig := x[i]
			x[i] = orig + eps
			_, fp := runLoss(t, w, gc.batch, Options{Mode: Train, View: ViewLR})
			x[i] = orig - eps
			_, fm := runLoss(t, w, gc.batch, Options{Mode: Train, View: ViewLR})
			x[i] = orig
			num := (fp - fm) / (2 * eps)
			worst = math.Max(worst, math.Abs(num-g.Data().([]float64)[i])/math.Max(1e-3, math.Abs(num)))
		}
		t.Logf("%s: worst relative error %.2e", suffix, worst)
		if worst > 1e-5 {
			t.Errorf("%s: gradient differs from finite differences by %.2e", suffix, worst)
		}
	}
}
