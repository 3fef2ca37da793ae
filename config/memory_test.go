package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	cfg.GradientAccumulationSteps = 1
	mixed := cfg
	mixed.LLaVA.BF16 = true
	if a, b := planned(cfg.Plan(100), "activations"), planned(mixed.Plan(100), "activations"); a != b || a == 0 {
		t.Errorf("the CPU plan's activations: %d bytes with bf16, %d without; want the same (the CPU rounds held values in place)", b, a)
	}
	plain, held := cfg.activations(100, false), cfg.activations(100, true)
	cfg.LLaVA.GradientCheckpointing = true
	re := cfg.activations(100, false)
	D, F := int64(cfg.Arch.Text.HiddenSize), int64(cfg.Arch.Text.IntermediateSize)
	M := activationsM(cfg)
	perLayer := 8*100*D + 3*100*F + int64(cfg.Arch.Text.NumHeads)*100*100 + 3*M*D
	if k := cfg.trainableLayers(); k < 2 || plain-re != (k-1)*perLayer-k*100*D {
		t.Errorf("activations %d with gradient_checkpointing, %d without: want all but one trainable layer's values fewer, the %d inputs kept", re, plain, k)
	}
	if k := cfg.trainableLayers(); plain-held != k*((6*100*D+3*100*F+2*M*D)/2) {
		t.Errorf("activations %d held in bfloat16, %d not: want each trainable layer's held values at half", held, plain)
	}
	if total, ok := physicalMemory(); ok && total < 1<<20 {
		t.Errorf("physicalMemory = %d bytes; want the machine's memory", total)
	}
}

// TestPlanFrozenIn16Bits: a float32 run from a folder stored in float16 counts its frozen matrices at 2 bytes
// (the store keeps them so) and its frozen vectors at 4; a folder in float32 counts all at 4.
func TestPlanFrozenIn16Bits(t *testing.T) {
	cfg := loadValid(t)
	var matrices, vectors int64
	for name, shape := range model.Shapes(cfg.Model()) {
		n := int64(1)
		for _, d := range shape {
			n *= int64(d)
		}
		switch {
		case cfg.Trainable(name):
		case len(shape) >= 2:
			matrices += n
		default:
			vectors += n
		}
	}
	for _, tt := range []struct {
		dtype, part string
		bytes       int64
	}{
		{"float16", "frozen weights (matrices in 16 bits)", 2*matrices + 4*vectors},
		{"bfloat16", "frozen weights (matrices in 16 bits)", 2*matrices + 4*vectors},
		{"float32", "frozen weights", 4 * (matrices + vectors)},
	} {
		dir := t.TempDir()
		conf := fmt.Sprintf(`{"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", "torch_dtype": %q}`, tt.dtype)
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.ModelNameOrPath = dir
		p := c.Plan(100)
		if p.Parts[0].Name != tt.part || p.Parts[0].Bytes != tt.bytes || p.Parts[0].Elements != matrices+vectors {
			t.Errorf("%s: first part %+v; want %q, %d elements in %d bytes", tt.dtype, p.Parts[0], tt.part, matrices+vectors, tt.bytes)
		}
	}
}

// TestPredictPlan: the cache holds a key and a value per layer for every row, prompt and answer; the FlexAttention
// view adds the HR features and runs the tower on 1 + Z² images; the total adds the parts.
func TestPredictPlan(t *testing.T) {
	m := loadValid(t).Model()
	L, D := int64(m.Text.NumLayers), int64(m.Text.HiddenSize)
	_, _, _, M := m.Grid()
	for _, hr := range []bool{false, true} {
		p := PredictPlan(m, 1000, 2000, 30, 5, hr)
		parts := map[string]int64{}
		var sum int64
		for _, part := range p.Parts {
			parts[part.Name] = part.Bytes
			sum += part.Bytes
		}
		if sum != p.Total || parts["weights (16-bit ones mapped)"] != 2000 || parts["key and value cache"] != 4*2*L*35*D {
			t.Errorf("hr %v: parts %+v (total %d)", hr, p.Parts, p.Total)
		}
		towerPart := "vision tower on 1 image(s)"
		if hr {
			towerPart = fmt.Sprintf("vision tower on %d image(s)", 1+m.Flex.Zoom*m.Flex.Zoom)
		}
		if _, ok := parts[towerPart]; !ok {
			t.Errorf("hr %v: no part %q in %+v", hr, towerPart, p.Parts)
		}
		if got, want := parts["HR features"], map[bool]int64{false: 0, true: 4 * int64(M) * D}[hr]; got != want {
			t.Errorf("hr %v: HR features %d bytes; want %d", hr, got, want)
		}
	}
}

// activationsM is the model's HR token count M.
func activationsM(cfg Config) int64 {
	_, _, _, m := cfg.Model().Grid()
	return int64(m)
}

// TestDevicePlan: on a GPU the frozen matrices of a bf16 run count at 2 bytes as on the CPU, the trainable
// weights' bfloat16 copies at 2, the gradients once (twice with gradient accumulation: the graph's and the
// step's sums), no feature cache, and 1/16 more for the device's size classes; a GPU smaller than the plan is
// refused with it, naming the device.
func TestDevicePlan(t *testing.T) {
	for _, c := range []struct {
		accumulation int
		grads        string
		copies       int64
	}{
		{1, "gradients", 1},
		{4, "gradients (the graph's, the step's sums)", 2},
	} {
		cfg := loadValid(t, "bf16=true", fmt.Sprintf("gradient_accumulation_steps=%d", c.accumulation))
		frozen, frozen16, trainable := cfg.parameters()
		p := cfg.DevicePlan(100)
		want := map[string]int64{"frozen weights (matrices in 16 bits)": 4*frozen - 2*frozen16, "trainable weights": 4 * trainable,
			"their bfloat16 copies": 2 * trainable, c.grads: 4 * c.copies * trainable, "AdamW m and v": 8 * trainable}
		var sum int64
		for _, part := range p.Parts {
			if b, ok := want[part.Name]; ok && part.Bytes != b {
				t.Errorf("accumulation %d: %s: %d bytes; want %d", c.accumulation, part.Name, part.Bytes, b)
			}
			delete(want, part.Name)
			sum += part.Bytes
		}
		acts := cfg.activations(100, cfg.LLaVA.BF16) * int64(cfg.PerDeviceTrainBatchSize)
		asked := 4*(frozen+(3+c.copies)*trainable+acts) - 2*frozen16 + 2*trainable
		if len(want) > 0 || sum != p.Total || sum != asked+asked/16 {
			t.Errorf("accumulation %d: plan %+v: missing %v, total %d", c.accumulation, p.Parts, want, p.Total)
		}
	}
	cfg := loadValid(t, "bf16=true")
	full := cfg.DevicePlan(0).Total
	if err := cfg.CheckDeviceMemory("cuda:1", full); err != nil {
		t.Errorf("a GPU of exactly the plan: %v", err)
	}
	if err := cfg.CheckDeviceMemory("cuda:1", full-1); err == nil || !strings.Contains(err.Error(), "on cuda:1") {
		t.Errorf("a GPU a byte short: %v", err)
	}
}

// planned is the bytes of p's part whose name begins with prefix, or 0.
func planned(p Plan, prefix string) int64 {
	for _, part := range p.Parts {
		if strings.HasPrefix(part.Name, prefix) {
			return part.Bytes
		}
	}
	return 0
}
