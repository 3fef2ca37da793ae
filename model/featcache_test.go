package model

import (
	"testing"

	"github.com/flextrain/flextrain/model/featcache"
	"gorgonia.org/tensor"
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
