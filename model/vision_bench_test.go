package model

import (
	"math/rand/v2"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// benchConfig is the model of configs/bench.yaml.
func benchConfig() Config {
	return Config{
		Vision: VisionConfig{ImageSize: 64, PatchSize: 8, HiddenSize: 128, IntermediateSize: 512, NumLayers: 4, NumHeads: 4, LayerNormEps: 1e-5, SelectLayer: -2},
		Text:   TextConfig{VocabSize: 1024, HiddenSize: 256, IntermediateSize: 704, NumLayers: 8, NumHeads: 8, RMSNormEps: 1e-5, RopeTheta: 10000},
		Flex:   FlexConfig{NSA: 3, Zoom: 3, SelectGrid: 6, Threshold: 48, Strategy: "attention"},
	}
}

// BenchmarkFrozenTower times the frozen tower of a bench batch (configs/bench.yaml, float32): the LR
// features of 8 images, the HR features (tower and projector over the 9 crops) of one image, as inference
// computes them, and of 8 images on all cores, as an uncached training step does.
func BenchmarkFrozenTower(b *testing.B) {
	cfg := benchConfig()
	w := InitWeights(cfg, tensor.Float32, 1)
	get := params[float32]{w: w}
	S, Z, D := cfg.Vision.ImageSize, cfg.Flex.Zoom, cfg.Text.HiddenSize
	_, n, _, M := cfg.Grid()
	rng := rand.New(rand.NewPCG(1, 2))
	images := make([][]float32, 8)
	for i := range images {
		images[i] = make([]float32, 3*Z*S*Z*S)
		for j := range images[i] {
			images[i][j] = float32(rng.NormFloat64())
		}
	}
	mem := ops.NewArena()
	b.Run("lr", func(b *testing.B) {
		for range b.N {
			for _, px := range images {
				f := visionFeatures(mem, cfg, get, px[:3*S*S], 1)
				ops.Recycle(mem, project(mem, cfg, get, f, n), f)
			}
		}
	})
	b.Run("hr-one", func(b *testing.B) { // one image alone, as inference computes it
		hd := make([]float32, M*D)
		for range b.N {
			t := hrTower(mem, cfg, get, images[0])
			hrFeatures(mem, cfg, get, t, hd)
			ops.Recycle(mem, t)
		}
	})
	b.Run("hr", func(b *testing.B) {
		hd := make([]float32, len(images)*M*D)
		for range b.N {
			ops.Parallel(len(images), func(i int) {
				t := hrTower(mem, cfg, get, images[i])
				hrFeatures(mem, cfg, get, t, hd[i*M*D:(i+1)*M*D])
				ops.Recycle(mem, t)
			})
		}
	})
}
