package model

import (
	"math"
	"testing"
)

// llava7B is LLaVA-1.5-7B with FlexAttention: CLIP ViT-L/14-336 and Vicuna-7B, n_sa 9 (docs/DESIGN.md §2).
func llava7B() Config {
	return Config{
		Vision: VisionConfig{ImageSize: 336, PatchSize: 14, HiddenSize: 1024, IntermediateSize: 4096, NumLayers: 24,
			NumHeads: 16, LayerNormEps: 1e-5, SelectLayer: -2},
		Text: TextConfig{VocabSize: 32000, HiddenSize: 4096, IntermediateSize: 11008, NumLayers: 32, NumHeads: 32,
			RMSNormEps: 1e-5, RopeTheta: 10000},
		Flex: FlexConfig{NSA: 9, Zoom: 3, SelectGrid: 9, Threshold: 48, Strategy: "attention"},
	}
}

// TestForwardFLOPsLLaVA7B checks the numbers of docs/DESIGN.md §14 for 64 text tokens and 10% selected:
// LR-only 9.08 ± 0.05 TFLOPs (counted independently) and the paper-like FlexAttention count 17.1 ± 0.2 (the
// FlexAttention paper's).
func TestForwardFLOPsLLaVA7B(t *testing.T) {
	f, err := llava7B().ForwardFLOPs(64, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if f.ImageTokens != 576 || f.HRTokens != 5184 {
		t.Errorf("image tokens %d, HR tokens %d; want 576, 5184", f.ImageTokens, f.HRTokens)
	}
	for _, tt := range []struct {
		name      string
		got, want float64
		tol       float64
	}{
		{"LR-only", f.LROnly.Total() / 1e12, 9.08, 0.05},
		{"FlexAttention paper-like", f.FlexPaper.Total() / 1e12, 17.1, 0.2},
	} {
		if math.Abs(tt.got-tt.want) > tt.tol {
			t.Errorf("%s = %.3f TFLOPs; want %.2f ± %.2f", tt.name, tt.got, tt.want, tt.tol)
		}
	}
}

// TestForwardFLOPsTiny checks every count of a tiny model against arithmetic done by hand.
// S 16, P 8: g 2, n 4; Cv 8, I 16, 2 CLIP layers run (select_layer −1); D 8, F 16, V 10, L 2, n_sa 1; Z 2:
// M_all 16. With 4 text tokens N = 8, and selected 0.25: M = 4.
func TestForwardFLOPsTiny(t *testing.T) {
	c := Config{
		Vision: VisionConfig{ImageSize: 16, PatchSize: 8, HiddenSize: 8, IntermediateSize: 16, NumLayers: 2, NumHeads: 2,
			LayerNormEps: 1e-5, SelectLayer: -1},
		Text: TextConfig{VocabSize: 10, HiddenSize: 8, IntermediateSize: 16, NumLayers: 2, NumHeads: 2, RMSNormEps: 1e-5, RopeTheta: 1e4},
		Flex: FlexConfig{NSA: 1, Zoom: 2, SelectGrid: 2, Threshold: 48, Strategy: "attention"},
	}
	const (
		plain8  = 2*8*4*64 + 4*8*8*8 + 6*8*8*16              // 4096 + 2048 + 6144 = 12288
		head8   = 2 * 8 * 8 * 10                             // 1280
		crop    = 2*(10*(4*64+2*8*16)+4*25*8) + 12288 + 1024 // 2 layers over T = 5 (11840), patch 2·4·3·64·8, projector 2·4·(64+64)
		flexInf = 4096 + 2*4*2*64 + 4*8*12*8 + 6144          // 14336
		flexPap = 4096 + 2*16*2*64 + 4*8*12*8 + 6144         // 17408
		full20  = 2*20*4*64 + 4*20*20*8 + 6*20*8*16          // 38400, T + M_all = 20 tokens
	)
	f, err := c.ForwardFLOPs(4, 0.25)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want float64
	}{
		{"LR-only decoder", f.LROnly.Decoder, 2*plain8 + head8},
		{"LR-only vision", f.LROnly.Vision, crop},
		{"inference decoder", f.FlexInference.Decoder, plain8 + flexInf + head8},
		{"inference vision", f.FlexInference.Vision, 5 * crop},
		{"paper decoder", f.FlexPaper.Decoder, plain8 + flexPap + head8},
		{"paper vision", f.FlexPaper.Vision, crop},
		{"full HR decoder", f.FullHR.Decoder, 2*full20 + 2*20*8*10},
		{"full HR vision", f.FullHR.Vision, 4 * crop},
		{"dense layer", c.FlexDenseLayerFLOPs(8), 4096 + 2*16*2*64 + 2*8*24*8 + 4*8*24*8 + 6144},
		{"reduction inference", f.ReductionInference(), 1 - (plain8+flexInf+head8+5.0*crop)/(2*full20+3200+4*crop)},
		{"reduction paper", f.ReductionPaper(), 1 - (plain8+flexPap+head8+crop)/(2*full20+3200.0)},
	} {
		if math.Abs(tt.got-tt.want) > 1e-12*math.Abs(tt.want) {
			t.Errorf("%s = %.17g; want %.17g", tt.name, tt.got, tt.want)
		}
	}
}

func TestForwardFLOPsErrors(t *testing.T) {
	bad := llava7B()
	bad.Vision.PatchSize = 0
	for _, tt := range []struct {
		name     string
		c        Config
		text     int
		selected float64
	}{
		{"invalid config", bad, 64, 0.1},
		{"negative text tokens", llava7B(), -1, 0.1},
		{"selected above 1", llava7B(), 64, 1.5},
		{"selected NaN", llava7B(), 64, math.NaN()},
	} {
		if _, err := tt.c.ForwardFLOPs(tt.text, tt.selected); err == nil {
			t.Errorf("%s: ForwardFLOPs = nil error; want an error", tt.name)
		}
	}
}
