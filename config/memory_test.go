package config

import (
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model"
)

// TestPlanMemory: the plan counts the elements InitWeights allocates, and three more copies (gradient, m,
// v) of the trainable ones, four with gradient accumulation.
func TestPlanMemory(t *testing.T) {
	cfg := loadValid(t)
	w := model.InitWeights(cfg.Model(), tensor.Float32, 1)
	var params, trainable int64
	for _, name := range w.Names() {
		n := int64(w.Get(name).Len())
		params += n
		if cfg.Trainable(name) {
			trainable += n
		}
	}
	for _, acc := range []int{1, 2} {
		cfg.GradientAccumulationSteps = acc
		p := cfg.planMemory(4)
		copies := int64(2 + acc)
		if p.params != params || p.trainable != trainable || p.bytes != 4*(params+copies*trainable) {
			t.Errorf("accumulation %d: plan %+v; want %d parameters, %d trainable, %d bytes", acc, p, params, trainable, 4*(params+copies*trainable))
		}
	}
	if total, ok := physicalMemory(); ok && total < 1<<20 {
		t.Errorf("physicalMemory = %d bytes; want the machine's memory", total)
	}
}
