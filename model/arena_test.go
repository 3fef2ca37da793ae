package model

import (
	"math"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// TestArenaMatchesPlainAllocation runs the golden training case with and without an arena, in both dtypes
// and every view, and wants the same loss and gradients to the bit: once on fresh buffers, and again on
// the first run's buffers handed back and filled with NaN (twice), so a value still in use when its buffer
// is lent again, or a kernel that reads memory it did not write, shows up as a difference; the buffers of
// values freed during a run (ops.PlanReleases) are filled with NaN as they are freed, so a value read
// after its release shows up too. A later run must
// find nearly all its buffers waiting. The towers of several images run at once, so how many temporaries
// are out together depends on the scheduling: a run that meets a higher peak than the first allocates
// that once, which is why either of the two later runs may show the reuse; a buffer that is never handed
// back costs every run.
func TestArenaMatchesPlainAllocation(t *testing.T) {
	gc := goldenTrainCase(t)
	for _, tt := range []struct {
		name   string
		dt     tensor.Dtype
		opt    Options
		vision bool // the vision tower trains too (its graph ops allocate from the arena)
	}{
		{name: "flex/float64", dt: tensor.Float64, opt: Options{Mode: Train, Alpha: 0.5}},
		{name: "flex/float32", dt: tensor.Float32, opt: Options{Mode: Train, Alpha: 0.5}},
		{name: "dense/float32", dt: tensor.Float32, opt: Options{Mode: Train, Alpha: 0.5, Dense: true}},
		{name: "hd-seq/float32", dt: tensor.Float32, opt: Options{Mode: Train, View: ViewHDSeq}},
		{name: "lr+vision/float32", dt: tensor.Float32, opt: Options{Mode: Train, View: ViewLR}, vision: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, err := FromTensors(gc.cfg, tt.dt, gc.tensor)
			if err != nil {
				t.Fatal(err)
			}
			tt.opt.Trainable = defaultTrainable(gc.cfg)
			if tt.vision {
				tt.opt.Trainable = trainAll
			}
			plainLoss, plainGrads := lossAndGrads(t, w, gc.batch, tt.opt)
			tt.opt.Arena = ops.NewArena()
			tt.opt.Arena.PoisonFrees() // a value read after it was freed reads NaN
			var first, least int64
			for run := range 3 {
				tt.opt.Arena.Poison()
				fresh := tt.opt.Arena.Stats().Fresh
				loss, grads := lossAndGrads(t, w, gc.batch, tt.opt)
				if math.Float64bits(loss) != math.Float64bits(plainLoss) {
					t.Errorf("run %d: loss %.17g; want %.17g as without an arena", run, loss, plainLoss)
				}
				for name, want := range plainGrads {
					if got := grads[name]; !sameBits(got, want) {
						t.Errorf("run %d: gradient of %s differs from the run without an arena", run, name)
					}
				}
				extra := tt.opt.Arena.Stats().Fresh - fresh
				if run == 0 {
					first, least = extra, extra
				}
				least = min(least, extra)
			}
			if least > first/10 {
				t.Errorf("the later runs allocated at least %d new bytes, the first %d; want at least 90%% reused", least, first)
			}
		})
	}
}

// lossAndGrads builds, runs and closes a graph, and returns copies of its loss and gradients.
func lossAndGrads(t *testing.T, w *Weights, b *Batch[float64], opt Options) (float64, map[string][]float64) {
	t.Helper()
	m, loss := runLoss(t, w, b, opt)
	grads := map[string][]float64{}
	for name, d := range m.Grads() {
		grads[name] = floatsOf(d)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return loss, grads
}

func sameBits(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}
