//go:build gpu

package main

import (
	"math"
	"testing"

	"github.com/flextrain/flextrain/gpu"
)

// TestFitOnGPU trains configs/tiny.yaml on the GPU as a user would: its losses and gradient norms follow the
// CPU's to float32's tolerance (cuBLAS sums in its own order), a GPU run stopped at a checkpoint and resumed
// on the GPU takes the straight GPU run's steps and ends in its checkpoint bit for bit, and a checkpoint the
// CPU wrote resumes on the GPU along the CPU's path.
func TestFitOnGPU(t *testing.T) {
	requireGPUs(t, 1)
	sets := func(more ...string) []string { return append(append([]string{"save_steps=2"}, signalSets...), more...) }
	cpu, cuda, resumed, mixed := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	fit(t, cpu, sets("device=cpu", "max_steps=4")...)
	fit(t, cuda, sets("device=cuda", "max_steps=4")...)
	closeSteps(t, stepLosses(t, cpu), stepLosses(t, cuda), 1, 4)

	fit(t, resumed, sets("device=cuda", "max_steps=2")...)
	fit(t, resumed, sets("device=cuda", "max_steps=4")...)
	compareRuns(t, cuda, resumed, 4)

	fit(t, mixed, sets("device=cpu", "max_steps=2")...)
	fit(t, mixed, sets("device=cuda", "max_steps=4")...)
	closeSteps(t, stepLosses(t, cpu), stepLosses(t, mixed), 3, 4)
}

// requireGPUs skips the test unless this machine has the GPUs cuda:0 to cuda:n−1.
func requireGPUs(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		d, err := gpu.Open(i, false)
		if err != nil {
			t.Skipf("no GPU cuda:%d: %v", i, err)
		}
		d.Close()
	}
}

// closeSteps checks that steps first…last of two runs have losses within 10⁻⁵ and gradient norms within
// 10⁻⁴ of each other, relatively: float32's summation error over the tiny model, where a wrong operation
// is off by far more.
func closeSteps(t *testing.T, want, got map[int]map[string]any, first, last int) {
	t.Helper()
	for step := first; step <= last; step++ {
		for key, tol := range map[string]float64{"loss": 1e-5, "grad_norm": 1e-4} {
			x, okx := want[step][key].(float64)
			y, oky := got[step][key].(float64)
			if !okx || !oky || !(math.Abs(y-x) <= tol*math.Abs(x)) {
				t.Errorf("step %d: %s %v on the GPU, %v on the CPU", step, key, got[step][key], want[step][key])
			}
		}
	}
}
