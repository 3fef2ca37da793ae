package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
)

// TestModes runs every bench mode on the tiny model: union and dense compute the same loss (docs/DESIGN.md §11:
// the union form equals the dense one up to summation order), the cached steps equal the uncached ones bit for
// bit, and the report describes what ran.
func TestModes(t *testing.T) {
	cfg, err := config.Load("../../configs/tiny.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	loss := map[string]float64{}
	for _, mode := range Modes {
		for _, cached := range []bool{false, true} {
			r, err := Run(cfg, Options{Mode: mode, Steps: 2, Warmup: 1, Strategy: "topk", Ratio: 0.25, Cached: cached})
			if err != nil {
				t.Fatalf("%s cached=%v: %v", mode, cached, err)
			}
			if r.Mode != mode || r.Steps != 2 || r.MedianMS <= 0 || r.PeakRSSMiB <= 0 || math.IsNaN(r.Loss) {
				t.Errorf("%s cached=%v: report %+v", mode, cached, r)
			}
			// Every lookup after the warm-up step hits: at least 2 of the 3 steps' lookups.
			if cached && (r.FeatureHitRate < 2.0/3-1e-9 || r.FeatureHitRate >= 1) {
				t.Errorf("%s cached: feature cache hit rate %g; want ≥ 2/3 and < 1", mode, r.FeatureHitRate)
			}
			if !cached && r.FeatureHitRate != 0 {
				t.Errorf("%s uncached: feature cache hit rate %g; want 0", mode, r.FeatureHitRate)
			}
			if cached {
				if r.Loss != loss[mode] {
					t.Errorf("%s: loss %v with cached features, %v without", mode, r.Loss, loss[mode])
				}
			} else {
				loss[mode] = r.Loss
			}
		}
	}
	if u, d := loss["flex-union"], loss["flex-dense"]; math.Abs(u-d) > 1e-5*math.Abs(d) {
		t.Errorf("flex-union loss %v, flex-dense %v: the union form must compute the dense form's numbers", u, d)
	}
	if loss["flex-union"] == loss["lr"] {
		t.Errorf("flex-union and lr losses are both %v: the HR tokens changed nothing", loss["lr"])
	}
	if _, err := Run(cfg, Options{Mode: "sparse", Steps: 1}); err == nil {
		t.Error("unknown mode: no error")
	}
}

// TestBenchInterleaved times union and dense step for step in one process: each mode keeps its own model and
// optimizer, so each reports what it reports alone, bit for bit.
func TestInterleaved(t *testing.T) {
	cfg, err := config.Load("../../configs/tiny.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Steps: 2, Warmup: 1, Strategy: "topk", Ratio: 0.25}
	modes := []string{"flex-union", "flex-dense"}
	rs, err := Interleaved(cfg, opts, modes)
	if err != nil {
		t.Fatal(err)
	}
	for i, mode := range modes {
		opts.Mode = mode
		alone, err := Run(cfg, opts)
		if err != nil {
			t.Fatal(err)
		}
		if rs[i].Mode != mode || rs[i].MedianMS <= 0 || rs[i].Loss != alone.Loss {
			t.Errorf("%s interleaved: mode %q, median %v ms, loss %v; alone the loss is %v", mode, rs[i].Mode, rs[i].MedianMS, rs[i].Loss, alone.Loss)
		}
	}
	if _, err := Interleaved(cfg, opts, []string{"flex-union", "sparse"}); err == nil {
		t.Error("unknown second mode: no error")
	}
}

// TestBF16: with bf16 the frozen matrices are held in bfloat16, as fit holds them: the loss moves by their
// rounding only.
func TestBF16(t *testing.T) {
	cfg, err := config.Load("../../configs/tiny.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Mode: "flex-union", Steps: 1, Strategy: "topk", Ratio: 0.25}
	plain, err := Run(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LLaVA.BF16 = true
	bf16, err := Run(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(bf16.Loss-plain.Loss) / plain.Loss; bf16.Loss == plain.Loss || d > 0.01 {
		t.Errorf("loss %v with bf16, %v without: want a difference of bfloat16's rounding (under 1%%)", bf16.Loss, plain.Loss)
	}
}

// TestPlanMatchesArena: the memory plan's activations (config.Plan) against what a step's buffers measure
// on the bench model, with the tower frozen and training: each within 15%, and what a training tower adds
// within 25% of what it adds to the measure (22.9 MiB planned, 18.9 to 20.3 measured: the towers of the
// batch's images run at once, so how many of their temporaries are out together depends on the scheduling).
func TestPlanMatchesArena(t *testing.T) {
	measured, planned := map[bool]float64{}, map[bool]float64{}
	for _, tower := range []bool{false, true} {
		frozen := "frozen=[model.layers.0.*,model.vision_tower.*]"
		if tower {
			frozen = "frozen=[model.layers.0.*]"
		}
		cfg, err := config.Load("../../configs/bench.yaml", []string{"trainable=[model.*,lm_head.*]", frozen})
		if err != nil {
			t.Fatal(err)
		}
		r, err := Run(cfg, Options{Mode: "flex-union", Steps: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range cfg.Plan(r.SequenceLength).Parts {
			if strings.HasPrefix(part.Name, "activations") {
				planned[tower] = float64(part.Bytes) / (1 << 20)
			}
		}
		measured[tower] = r.ArenaMiB
		t.Logf("tower trains %v: the plan's activations %.1f MiB, the step's buffers %.1f MiB", tower, planned[tower], measured[tower])
		if e := math.Abs(planned[tower]-measured[tower]) / measured[tower]; e > 0.15 {
			t.Errorf("tower trains %v: the plan's activations %.1f MiB, the step's buffers %.1f MiB", tower, planned[tower], measured[tower])
		}
	}
	plan, arena := planned[true]-planned[false], measured[true]-measured[false]
	if arena <= 0 || math.Abs(plan-arena) > 0.25*arena {
		t.Errorf("a training tower adds %.1f MiB to the plan, %.1f MiB to the step's buffers", plan, arena)
	}
}
