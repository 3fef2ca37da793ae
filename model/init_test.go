package model

import (
	"bytes"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

// tinyConfig is the golden tiny model of docs/DESIGN.md §2, written out so these tests need no file.
func tinyConfig() Config {
	return Config{
		Vision: VisionConfig{ImageSize: 32, PatchSize: 8, HiddenSize: 32, IntermediateSize: 128, NumLayers: 2,
			NumHeads: 4, LayerNormEps: 1e-5, SelectLayer: -2},
		Text: TextConfig{VocabSize: 96, HiddenSize: 48, IntermediateSize: 128, NumLayers: 4, NumHeads: 4,
			RMSNormEps: 1e-5, RopeTheta: 10000},
		Flex: FlexConfig{NSA: 2, Zoom: 3, SelectGrid: 3, Threshold: 48, Strategy: "attention"},
	}
}

func TestInitWeightsDeterministic(t *testing.T) {
	cfg := tinyConfig()
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		a, b, other := InitWeights(cfg, dt, 7).Tensors(), InitWeights(cfg, dt, 7).Tensors(), InitWeights(cfg, dt, 8).Tensors()
		for name, ta := range a {
			if !bytes.Equal(ta.Data, b[name].Data) {
				t.Errorf("%v %s: two inits with seed 7 differ; want bit-identical", dt, name)
			}
			random := !strings.Contains(name, "norm") && !strings.HasSuffix(name, ".bias")
			if random && bytes.Equal(ta.Data, other[name].Data) {
				t.Errorf("%v %s: seeds 7 and 8 give the same values; want different", dt, name)
			}
		}
	}
}

func TestInitWeightsKinds(t *testing.T) {
	cfg := tinyConfig()
	w := InitWeights(cfg, tensor.Float64, 1)
	if got, want := w.Names(), slices.Sorted(maps.Keys(Shapes(cfg))); !reflect.DeepEqual(got, want) {
		t.Fatalf("names: got %v; want Shapes' %v", got, want)
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{"model.norm.weight", 1}, {"model.layers.1.post_attention_layernorm.weight", 1},
		{VisionPrefix + "pre_layrnorm.weight", 1}, {VisionPrefix + "pre_layrnorm.bias", 0},
		{VisionPrefix + "encoder.layers.1.mlp.fc1.bias", 0}, {"model.mm_projector.2.bias", 0},
	} {
		if v := w.Get(c.name).Data().([]float64); !reflect.DeepEqual(v, filled(len(v), c.want)) {
			t.Errorf("%s: got %v; want all %g", c.name, v, c.want)
		}
	}
	for _, l := range []string{"2", "3"} {
		for _, p := range []string{"k_proj", "v_proj"} {
			src, hd := w.Get("model.layers."+l+".self_attn."+p+".weight"), w.Get("model.layers."+l+".self_attn."+p+"_hd.weight")
			if hd == nil || src == nil || hd == src || !reflect.DeepEqual(hd.Data(), src.Data()) {
				t.Errorf("layer %s %s_hd: want a separate copy of %s", l, p, p)
			}
		}
	}
}

func TestInitWeightsStatistics(t *testing.T) {
	w := InitWeights(tinyConfig(), tensor.Float64, 3)
	for _, name := range []string{"model.embed_tokens.weight", "lm_head.weight", VisionPrefix + "embeddings.position_embedding.weight",
		VisionPrefix + "embeddings.patch_embedding.weight", "model.layers.0.mlp.down_proj.weight"} {
		v := w.Get(name).Data().([]float64)
		var sum, sq float64
		for _, x := range v {
			sum += x
			sq += x * x
		}
		mean, std := sum/float64(len(v)), math.Sqrt(sq/float64(len(v)))
		// The sample std of n normals has a standard error of about 0.02/sqrt(2n) ≤ 0.0003 here: 10 % is > 6 sigma.
		if math.Abs(std-0.02) > 0.002 || math.Abs(mean) > 0.002 {
			t.Errorf("%s: got mean %.4f, std %.4f; want 0, 0.02", name, mean, std)
		}
	}
}

func TestInitWeightsFloat32IsRoundedFloat64(t *testing.T) {
	w64, w32 := InitWeights(tinyConfig(), tensor.Float64, 5), InitWeights(tinyConfig(), tensor.Float32, 5)
	for _, name := range w64.Names() {
		if !sameValues(w32.Get(name), w64.Get(name).Data().([]float64)) {
			t.Errorf("%s: float32 store is not the rounded float64 store", name)
		}
	}
}

func TestInitWeightsRefusesBadInput(t *testing.T) {
	bad := tinyConfig()
	bad.Vision.PatchSize = 0
	for _, c := range []struct {
		name string
		cfg  Config
		dt   tensor.Dtype
	}{{"invalid config", bad, tensor.Float32}, {"int dtype", tinyConfig(), tensor.Int}} {
		if w := InitWeights(c.cfg, c.dt, 1); w != nil {
			t.Errorf("%s: got %d weights; want nil", c.name, len(w.Names()))
		}
	}
}
