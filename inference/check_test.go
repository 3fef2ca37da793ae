package inference

import (
	"strings"
	"testing"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/safetensors"
)

// TestCheckCheckpoint: a checkpoint's tensors are checked against the model of its own config.yaml: a
// missing m/v, a wrong dtype or a tensor the model lacks are each named.
func TestCheckCheckpoint(t *testing.T) {
	f := newTrainedFixture(t)
	for _, tc := range []struct {
		name string
		edit func(ck *checkpoints.Checkpoint)
		want string // "" for no error
	}{
		{"as saved", func(*checkpoints.Checkpoint) {}, ""},
		{"extra tensor", func(ck *checkpoints.Checkpoint) {
			ck.Weights["model.layers.9.mlp.up_proj.weight"] = safetensors.FromFloat32([]int{1}, []float32{0})
		}, "model.layers.9.mlp.up_proj.weight"},
		{"missing moment", func(ck *checkpoints.Checkpoint) { delete(ck.Optimizer, "v.lm_head.weight") }, "v.lm_head.weight"},
		{"wrong dtype", func(ck *checkpoints.Checkpoint) {
			n := ck.Weights["model.norm.weight"].Shape
			ck.Weights["model.norm.weight"] = safetensors.FromFloat64(n, make([]float64, n[0]))
		}, "model.norm.weight"},
		{"swapped moment", func(ck *checkpoints.Checkpoint) {
			m := ck.Optimizer["m.lm_head.weight"]
			m.Shape = []int{m.Shape[1], m.Shape[0]}
			ck.Optimizer["m.lm_head.weight"] = m
		}, "m.lm_head.weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck, err := checkpoints.Load(f.ckpt)
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(ck)
			err = CheckCheckpoint(ck)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CheckCheckpoint: %v; want an error naming %q", err, tc.want)
			}
		})
	}
}
