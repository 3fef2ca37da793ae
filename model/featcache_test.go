package model

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/featcache"
	"github.com/flextrain/flextrain/model/ops"
)

// TestFeatureCache runs the golden training case three times: without a cache, with an empty one (misses,
// filled) and again (hits): the loss and gradients are bitwise the same, and the second run never runs the
// tower.
func TestFeatureCache(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float32, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	trainable := defaultTrainable(gc.cfg)
	cache, err := featcache.New(featcache.Options{Dir: t.TempDir(), Fingerprint: "golden"})
	if err != nil {
		t.Fatal(err)
	}
	plain, want := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: trainable})
	for run := 0; run < 2; run++ {
		m, got := runLoss(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: trainable, Features: cache})
		if got != want {
			t.Errorf("run %d: loss %v with the cache; want %v", run, got, want)
		}
		for name, g := range plain.Grads() {
			if e := relErr(floatsOf(m.Grads()[name]), floatsOf(g), nil); e != 0 {
				t.Errorf("run %d: %s differs by %.2g with the cache", run, name, e)
			}
		}
	}
	// two image samples: LR and HR views each missed once, then hit once
	if s := cache.Stats(); s.Misses != 4 || s.Hits != 4 {
		t.Errorf("cache stats %+v; want 4 misses then 4 hits", s)
	}
}

// TestFrozenFrontCache trains on the golden case with the frozen front in the feature cache: the first run
// computes and stores it, the next starts at layer n_sa from it. Loss, gradients and the selection are bitwise
// a run's without it, in float32 and float64, also for a batch of the same samples in another order and
// without the longest one (their fronts were computed in another batch, at another padded length).
func TestFrozenFrontCache(t *testing.T) {
	gc := goldenTrainCase(t)
	if gc.batch.Len() < 3 {
		t.Fatalf("the golden batch has %d samples; the test needs 3", gc.batch.Len())
	}
	longest := 0
	for i, m := range gc.batch.AttentionMask {
		if realLen(m) > realLen(gc.batch.AttentionMask[longest]) {
			longest = i
		}
	}
	var others []int
	for i := gc.batch.Len() - 1; i >= 0; i-- {
		if i != longest {
			others = append(others, i)
		}
	}
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		t.Run(dt.String(), func(t *testing.T) {
			w, err := FromTensors(gc.cfg, dt, gc.tensor)
			if err != nil {
				t.Fatal(err)
			}
			trainable := defaultTrainable(gc.cfg)
			front := FrontFingerprint(w, trainable, ops.Native)
			cache, err := featcache.New(featcache.Options{})
			if err != nil {
				t.Fatal(err)
			}
			plain := Options{Mode: Train, Alpha: 0.5, Trainable: trainable}
			cached := plain
			cached.Features, cached.Front = cache, front
			for run, batch := range []*Batch[float64]{gc.batch, gc.batch, subBatch(gc.batch, others), gc.batch} {
				cached.Recompute = run == 3 // the frozen front run a layer at a time: the same cache
				wantLoss, wantGrads, wantSel := frontRun(t, w, batch, plain)
				before := cache.Stats()
				loss, grads, sel := frontRun(t, w, batch, cached)
				if s := cache.Stats(); run > 0 && (s.Misses != before.Misses || s.Hits == before.Hits) {
					t.Errorf("run %d: %d misses and %d hits; want hits only", run, s.Misses-before.Misses, s.Hits-before.Hits)
				}
				if loss != wantLoss {
					t.Errorf("run %d: loss %v with the front cached; want %v", run, loss, wantLoss)
				}
				for name, g := range wantGrads {
					if !sameBits(grads[name], g) {
						t.Errorf("run %d: %s differs with the front cached (relative %.2g)", run, name, relErrOf(grads[name], g))
					}
				}
				if fmt.Sprint(sel) != fmt.Sprint(wantSel) {
					t.Errorf("run %d: layer n_sa's selection %v with the front cached; want %v", run, sel, wantSel)
				}
			}
		})
	}
	if FrontFingerprint(mustWeights(t, gc), func(string) bool { return true }, ops.Native) != "" {
		t.Error("FrontFingerprint with a trainable front is not empty")
	}
}

// TestTrainableFrontIsNotCached gives Build a front fingerprint while a weight of the front trains: the front
// is computed, not read from the cache, so that weight still gets its gradient.
func TestTrainableFrontIsNotCached(t *testing.T) {
	gc := goldenTrainCase(t)
	w := mustWeights(t, gc)
	frozen := defaultTrainable(gc.cfg)
	trainable := func(name string) bool { return frozen(name) || strings.HasPrefix(name, "model.layers.0.") }
	cache, err := featcache.New(featcache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{Mode: Train, Alpha: 0.5, Trainable: trainable, Features: cache, Front: FrontFingerprint(w, frozen, ops.Native)}
	_, want, _ := frontRun(t, w, gc.batch, Options{Mode: Train, Alpha: 0.5, Trainable: trainable})
	for run := range 2 {
		_, grads, _ := frontRun(t, w, gc.batch, opt)
		name := "model.layers.0.self_attn.q_proj.weight"
		if g, ok := grads[name]; !ok || !sameBits(g, want[name]) {
			t.Errorf("run %d: %s has gradient %v (want it as without the cache)", run, name, ok)
		}
	}
}

// frontRun returns a training run's loss, gradients and layer n_sa's selection.
func frontRun(t *testing.T, w *Weights, b *Batch[float64], opt Options) (float64, map[string][]float64, [][][]int) {
	t.Helper()
	m, loss := runLoss(t, w, b, opt)
	defer m.Close()
	sel, err := m.Selection(w.Config().Flex.NSA)
	if err != nil {
		t.Fatal(err)
	}
	grads := map[string][]float64{}
	for name, d := range m.Grads() {
		grads[name] = floatsOf(d)
	}
	return loss, grads, sel
}

func realLen(mask []int) int {
	n := 0
	for _, m := range mask {
		n += m
	}
	return n
}

// subBatch returns the samples idx of b, in that order.
func subBatch(b *Batch[float64], idx []int) *Batch[float64] {
	c := &Batch[float64]{}
	for _, i := range idx {
		c.InputIDs, c.AttentionMask, c.Labels = append(c.InputIDs, b.InputIDs[i]), append(c.AttentionMask, b.AttentionMask[i]), append(c.Labels, b.Labels[i])
		c.LRPixels, c.HRPixels, c.OriSizes = append(c.LRPixels, b.LRPixels[i]), append(c.HRPixels, b.HRPixels[i]), append(c.OriSizes, b.OriSizes[i])
	}
	return c
}

func relErrOf(a, b []float64) float64 {
	worst := 0.0
	for i := range b {
		if i < len(a) {
			worst = max(worst, math.Abs(a[i]-b[i])/max(math.Abs(b[i]), 1e-30))
		}
	}
	return worst
}

func mustWeights(t *testing.T, gc *goldenCase) *Weights {
	w, err := FromTensors(gc.cfg, tensor.Float32, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	return w
}
