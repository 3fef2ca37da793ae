// Package model is the LLaVA-style vision-language model with FlexAttention of docs/DESIGN.md: its
// configuration, weights, the forward and backward pass as a Gorgonia graph, selection, and FLOPs.
package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Config describes the whole model. Its JSON form is the `config` metadata of the golden case files.
type Config struct {
	Vision VisionConfig `json:"vision" yaml:"vision"`
	Text   TextConfig   `json:"text" yaml:"text"`
	Flex   FlexConfig   `json:"flex" yaml:"flex"`
}

// VisionConfig is the CLIP ViT tower (docs/DESIGN.md §3).
type VisionConfig struct {
	ImageSize        int     `json:"image_size" yaml:"image_size"`               // S, the LR image side
	PatchSize        int     `json:"patch_size" yaml:"patch_size"`               // P
	HiddenSize       int     `json:"hidden_size" yaml:"hidden_size"`             // Cv
	IntermediateSize int     `json:"intermediate_size" yaml:"intermediate_size"` // CLIP MLP width
	NumLayers        int     `json:"num_layers" yaml:"num_layers"`               // Lv
	NumHeads         int     `json:"num_heads" yaml:"num_heads"`                 // Hv
	LayerNormEps     float64 `json:"layer_norm_eps" yaml:"layer_norm_eps"`
	SelectLayer      int     `json:"select_layer" yaml:"select_layer"` // Python index into hs[0..Lv]; LLaVA uses -2
}

// TextConfig is the LLaMA decoder (docs/DESIGN.md §6).
type TextConfig struct {
	VocabSize        int     `json:"vocab_size" yaml:"vocab_size"`               // V
	HiddenSize       int     `json:"hidden_size" yaml:"hidden_size"`             // D
	IntermediateSize int     `json:"intermediate_size" yaml:"intermediate_size"` // F
	NumLayers        int     `json:"num_layers" yaml:"num_layers"`               // L
	NumHeads         int     `json:"num_heads" yaml:"num_heads"`                 // H
	RMSNormEps       float64 `json:"rms_norm_eps" yaml:"rms_norm_eps"`
	RopeTheta        float64 `json:"rope_theta" yaml:"rope_theta"`
}

// FlexConfig holds the FlexAttention settings (docs/DESIGN.md §7–§8).
type FlexConfig struct {
	NSA        int     `json:"n_sa" yaml:"n_sa"`               // plain layers before the first FlexAttention layer
	Zoom       int     `json:"zoom" yaml:"zoom"`               // Z: HR side = Z·S
	SelectGrid int     `json:"select_grid" yaml:"select_grid"` // G: selection cells per side
	Threshold  float64 `json:"threshold" yaml:"threshold"`     // on the 0…255 scale
	Strategy   string  `json:"strategy" yaml:"strategy"`       // attention, topk, random, center, oracle
	Ratio      float64 `json:"ratio,omitempty" yaml:"ratio,omitempty"`
}

// Strategies are the selection strategies of docs/DESIGN.md §8, and the oracle: the cells of each record's
// "box" (the synthetic set's target), an upper bound for experiments; it needs data that carries boxes.
var Strategies = []string{"attention", "topk", "random", "center", "oracle"}

// ParseConfig decodes a JSON configuration (the golden cases' config), refusing unknown keys and anything
// after the object, and validates it.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("model: config: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return c, errors.New("model: config: data after the JSON object")
	}
	return c, c.Validate()
}

// Grid returns g (LR grid side), n (LR image tokens), Zg (HR grid side) and M (HR tokens).
func (c Config) Grid() (g, n, zg, m int) {
	g = c.Vision.ImageSize / c.Vision.PatchSize
	zg = c.Flex.Zoom * g
	return g, g * g, zg, zg * zg
}

// HeadDim is the decoder's per-head width dh = D/H.
func (c Config) HeadDim() int { return c.Text.HiddenSize / c.Text.NumHeads }

// VisionLayersRun is how many CLIP layers produce hs[select_layer].
func (c Config) VisionLayersRun() int {
	L := c.Vision.NumLayers
	return ((c.Vision.SelectLayer % (L + 1)) + L + 1) % (L + 1)
}

// Upper bounds of the configuration's sizes. They are far above any published LLaVA-style model (LLaVA-1.5
// has S = 336, 24 + 40 layers, widths ≤ 13824, a 32000-token vocabulary), and low enough that a mistyped
// value (num_layers: 1000000) is refused with its key instead of exhausting memory while the model is laid
// out.
const (
	MaxImageSize = 4096    // vision.image_size, patch_size, select_grid
	MaxWidth     = 1 << 17 // hidden, intermediate sizes and head counts
	MaxLayers    = 1024    // vision.num_layers, text.num_layers
	MaxVocab     = 1 << 22 // text.vocab_size
	MaxZoom      = 16      // flex.zoom
	MaxHRTokens  = 1 << 20 // (zoom·S/P)², the HR tokens of one image
)

// Validate returns every problem with the configuration, one per line, or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("model: config: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	positive := func(field string, v int) {
		if v <= 0 {
			bad(field, "must be positive, got %d", v)
		}
	}
	v, t, f := c.Vision, c.Text, c.Flex
	for _, p := range []struct {
		name  string
		v, hi int
	}{
		{"vision.image_size", v.ImageSize, MaxImageSize}, {"vision.patch_size", v.PatchSize, MaxImageSize},
		{"vision.hidden_size", v.HiddenSize, MaxWidth}, {"vision.intermediate_size", v.IntermediateSize, MaxWidth},
		{"vision.num_layers", v.NumLayers, MaxLayers}, {"vision.num_heads", v.NumHeads, MaxWidth},
		{"text.vocab_size", t.VocabSize, MaxVocab}, {"text.hidden_size", t.HiddenSize, MaxWidth},
		{"text.intermediate_size", t.IntermediateSize, MaxWidth}, {"text.num_layers", t.NumLayers, MaxLayers},
		{"text.num_heads", t.NumHeads, MaxWidth}, {"flex.zoom", f.Zoom, MaxZoom}, {"flex.select_grid", f.SelectGrid, MaxImageSize},
	} {
		positive(p.name, p.v)
		if p.v > p.hi {
			bad(p.name, "%d is past the largest this build supports, %d", p.v, p.hi)
		}
	}
	if v.PatchSize > 0 && v.ImageSize%v.PatchSize != 0 {
		bad("vision.image_size", "%d is not a multiple of patch_size %d", v.ImageSize, v.PatchSize)
	}
	if v.NumHeads > 0 && v.HiddenSize%v.NumHeads != 0 {
		bad("vision.hidden_size", "%d is not a multiple of num_heads %d", v.HiddenSize, v.NumHeads)
	}
	if v.NumLayers > 0 && (v.SelectLayer > v.NumLayers || v.SelectLayer < -(v.NumLayers+1)) {
		bad("vision.select_layer", "%d is outside -%d…%d", v.SelectLayer, v.NumLayers+1, v.NumLayers)
	}
	if v.LayerNormEps <= 0 {
		bad("vision.layer_norm_eps", "must be positive, got %g", v.LayerNormEps)
	}
	if t.NumHeads > 0 && t.HiddenSize%t.NumHeads != 0 {
		bad("text.hidden_size", "%d is not a multiple of num_heads %d", t.HiddenSize, t.NumHeads)
	}
	if t.NumHeads > 0 && t.HiddenSize%t.NumHeads == 0 && (t.HiddenSize/t.NumHeads)%2 != 0 {
		bad("text.hidden_size", "head dim %d must be even for RoPE", t.HiddenSize/t.NumHeads)
	}
	if t.RMSNormEps <= 0 {
		bad("text.rms_norm_eps", "must be positive, got %g", t.RMSNormEps)
	}
	if t.RopeTheta <= 0 {
		bad("text.rope_theta", "must be positive, got %g", t.RopeTheta)
	}
	if f.NSA < 1 || (t.NumLayers > 0 && f.NSA >= t.NumLayers) {
		bad("flex.n_sa", "must be in 1…%d (num_layers-1: layer n_sa-1 selects for layer n_sa), got %d", t.NumLayers-1, f.NSA)
	}
	if f.Threshold < 0 || f.Threshold >= 255 {
		bad("flex.threshold", "must be in [0, 255), got %g", f.Threshold)
	}
	if !slices.Contains(Strategies, f.Strategy) {
		bad("flex.strategy", "%q is not one of %s", f.Strategy, strings.Join(Strategies, ", "))
	}
	if slices.Contains([]string{"topk", "random", "center"}, f.Strategy) && (f.Ratio <= 0 || f.Ratio > 1) {
		bad("flex.ratio", "must be in (0, 1] for strategy %s, got %g", f.Strategy, f.Ratio)
	}
	if g := c.gridOrZero(); g > 0 && f.Zoom > 0 && f.Zoom <= MaxZoom && g*f.Zoom*g*f.Zoom > MaxHRTokens {
		bad("flex.zoom", "%d·%d HR tokens per image are past the largest this build supports, %d", g*f.Zoom, g*f.Zoom, MaxHRTokens)
	}
	if g := c.gridOrZero(); g > 0 && f.SelectGrid > g*f.Zoom {
		bad("flex.select_grid", "%d cells exceed the HR grid side %d", f.SelectGrid, g*f.Zoom)
	}
	return errors.Join(errs...)
}

func (c Config) gridOrZero() int {
	if c.Vision.PatchSize <= 0 {
		return 0
	}
	return c.Vision.ImageSize / c.Vision.PatchSize
}
