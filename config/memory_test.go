package config

import (
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model"
)

// TestPlan: the plan counts the elements InitWeights allocates, frozen and trainable apart, a gradient per
// trainable element (two with gradient accumulation) and AdamW's two moments, and its total adds its parts.
func TestPlan(t *testing.T) {
	cfg := loadValid(t)
	w := model.InitWeights(cfg.Model(), tensor.Float32, 1)
	var frozen, trainable int64
	for _, name := range w.Names() {
		if n := int64(w.Get(name).Len()); cfg.Trainable(name) {
			trainable += n
		} else {
			frozen += n
		}
	}
	for _, acc := range []int{1, 2} {
		cfg.GradientAccumulationSteps = acc
		p := cfg.Plan(100)
		want := map[string]int64{"frozen weights": frozen, "trainable weights": trainable,
			"gradients": int64(acc) * trainable, "AdamW m and v": 2 * trainable}
		var sum int64
		for _, part := range p.Parts {
			if n, ok := want[part.Name]; ok && (part.Elements != n || part.Bytes != 4*n) {
				t.Errorf("accumulation %d: %s = %d elements, %d bytes; want %d, %d", acc, part.Name, part.Elements, part.Bytes, n, 4*n)
			}
			sum += part.Bytes
		}
		if sum != p.Total || len(p.Parts) < 5 {
			t.Errorf("accumulation %d: parts %+v add to %d, total %d", acc, p.Parts, sum, p.Total)
		}
	}
	if total, ok := physicalMemory(); ok && total < 1<<20 {
		t.Errorf("physicalMemory = %d bytes; want the machine's memory", total)
	}
}
