//go:build gpu

package model

import (
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/flextrain/flextrain/gpu"
)

var _ Device = (*gpu.Graphs)(nil)

// TestGraphOnGPU runs the tiny golden training case on the GPU and on the CPU, in float32, with the frozen
// matrices in bfloat16, and with recomputation: the loss and every gradient agree to float32's tolerance (cuBLAS sums in its
// own order), no operation ran on the CPU over copies, and a second run on the same device
// (the arena's buffers lent again, the weights kept) gives the first run's bits.
func TestGraphOnGPU(t *testing.T) {
	d, err := gpu.Open(0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		name            string
		bf16, recompute bool
	}{{"float32", false, false}, {"bf16", true, false}, {"recompute", false, true}} {
		t.Run(tc.name, func(t *testing.T) { testGraphOnGPU(t, d, tc.bf16, tc.recompute) })
	}
}

func testGraphOnGPU(t *testing.T, d *gpu.Device, bf16, recompute bool) {
	graphs := d.Graphs()
	defer graphs.Close()
	gc, w, opt, cpu := goldenTrainOnCPU(t, bf16)
	opt.Recompute = recompute
	opt.Device = graphs
	run := func() (float64, map[string][]float32) {
		g, err := Build(w, gc.batch, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		if err := g.Run(); err != nil {
			t.Fatal(err)
		}
		grads := map[string][]float32{}
		for name, v := range g.Grads() {
			h, err := graphs.Download(v)
			if err != nil {
				t.Fatal(err)
			}
			grads[name] = h.Data().([]float32)
		}
		return g.Loss(), grads
	}
	// The GPU sums in another order than the CPU: float32's summation error. With bf16, a product's output
	// rounded as the next product's operand may land one bfloat16 step (2⁻⁸) away from the CPU's where the
	// two sums straddle a rounding boundary: looser bounds, still well below the 2·10⁻² by which float32
	// products would differ from bfloat16 ones.
	lossTol, gradTol := 1e-5, 1e-4
	if bf16 {
		lossTol, gradTol = 1e-3, 5e-3
	}
	loss, grads := run()
	if e := math.Abs(loss-cpu.Loss()) / math.Abs(cpu.Loss()); e > lossTol {
		t.Errorf("loss %v on the GPU, %v on the CPU (relative error %.2g)", loss, cpu.Loss(), e)
	}
	want := cpu.Grads()
	if !slices.Equal(slices.Sorted(maps.Keys(grads)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("gradients of %v on the GPU, of %v on the CPU", slices.Sorted(maps.Keys(grads)), slices.Sorted(maps.Keys(want)))
	}
	for name, g := range want {
		if e := relErr32(grads[name], g.Data().([]float32)); e > gradTol {
			t.Errorf("%s: relative error %.2g", name, e)
		} else {
			t.Logf("%s: relative error %.2g", name, e)
		}
	}
	if len(graphs.Fallbacks) != 0 {
		t.Errorf("operations run on the CPU over copies: %v", graphs.Fallbacks)
	}
	again, grads2 := run()
	if again != loss {
		t.Errorf("a second run gives loss %v, the first %v", again, loss)
	}
	for name, g := range grads {
		if !slices.Equal(g, grads2[name]) {
			t.Errorf("%s: a second run gives other bits", name)
		}
	}
}

// relErr32 is ‖got − want‖ / ‖want‖.
func relErr32(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num, den = num+d*d, den+float64(want[i])*float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
