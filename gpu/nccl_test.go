//go:build gpu

package gpu

import (
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/optim"
)

// TestDeviceGroupOfOne: NCCL loads, a group of this one GPU forms, and the step's sums go through NCCL's
// all-reduce, in place, not through the host's sum, leaving them as they were (a sum over one rank).
// Skipped where the machine has no NCCL.
func TestDeviceGroupOfOne(t *testing.T) {
	d := openDevice(t)
	host := []optim.Param[float32]{{Name: "w", Shape: []int{5}, Value: []float32{1, 2, 3, 4, 5}, Grad: make([]float32, 5)}}
	run := d.Training(host)
	defer run.Close()
	if err := run.CanGroup(); err != nil {
		t.Skip(err)
	}
	id, err := run.GroupID()
	if err == nil {
		err = run.JoinGroup(id, 0, 1)
	}
	if err != nil {
		t.Fatal(err)
	}
	grad := []float32{0.5, -1, 2, 0, 3}
	v := graphValue(t, run.Graphs, slices.Clone(grad), 5)
	if err := run.Accumulate(map[string]*tensor.Dense{"w": v}, 4, false); err != nil {
		t.Fatal(err)
	}
	if err := run.Reduce(4, func([]float32) error { t.Error("the sums went through the host"); return nil }); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, len(grad))
	for i, g := range grad {
		want[i] = 4 * g
	}
	if got := download(t, d, run.grads["w"]); !slices.Equal(got, want) {
		t.Errorf("sums after the group's all-reduce %v; want %v", got, want)
	}
}
