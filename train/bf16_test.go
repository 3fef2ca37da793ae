package train

import (
	"math"
	"testing"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model"
)

// TestBF16TracksFloat32: with bf16 the tiny run keeps its frozen matrices in bfloat16 (each the seeded
// initialisation rounded) and its loss stays within 2% of the float32 run's at every one of 100 steps,
// while differing from it (the rounding is real).
func TestBF16TracksFloat32(t *testing.T) {
	if testing.Short() {
		t.Skip("two runs of 100 steps")
	}
	f32 := tinyConfig(t, "max_steps=100", "eval_steps=0", "save_steps=100")
	bf16 := tinyConfig(t, "max_steps=100", "eval_steps=0", "save_steps=100", "bf16=true")
	var held *model.Weights
	mustRun(t, f32, RunOptions{})
	mustRun(t, bf16, RunOptions{inspect: func(w *model.Weights) { held = w }})
	a, b := stepRecords(t, f32.OutputDir), stepRecords(t, bf16.OutputDir)
	worst, differ := 0.0, false
	for s := 1; s <= 100; s++ {
		la, lb := a[s]["loss"].(float64), b[s]["loss"].(float64)
		worst = max(worst, math.Abs(lb-la)/la)
		differ = differ || la != lb
	}
	t.Logf("largest relative difference of the step losses: %.4f", worst)
	if worst > 0.02 || !differ {
		t.Errorf("bf16 losses differ from float32's by up to %.4f (want ≤ 0.02, and some difference)", worst)
	}
	init := model.InitWeights(bf16.Model(), model.F32, uint64(bf16.Seed))
	var kept int
	for _, name := range held.Names() {
		h, ok := held.Half(name)
		if !ok {
			continue
		}
		kept++
		src := init.Get(name).Data().([]float32)
		for i, x := range src {
			if h.Kind != half.BFloat16 || h.Bits[i] != half.BFloat16.Round(x) {
				t.Fatalf("%s[%d] is %v %#04x; want bfloat16 %#04x", name, i, h.Kind, h.Bits[i], half.BFloat16.Round(x))
			}
		}
	}
	if kept == 0 {
		t.Error("no weight was kept in bfloat16")
	}
}
