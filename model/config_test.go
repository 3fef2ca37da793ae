package model

import (
	"strings"
	"testing"
)

// goldenConfig is the tiny model of docs/DESIGN.md §2.
func goldenConfig() Config {
	c, err := ParseConfig([]byte(`{"vision": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "intermediate_size": 128,
		"num_layers": 2, "num_heads": 4, "layer_norm_eps": 1e-05, "select_layer": -2},
		"text": {"vocab_size": 96, "hidden_size": 48, "intermediate_size": 128, "num_layers": 4, "num_heads": 4,
		"rms_norm_eps": 1e-05, "rope_theta": 10000.0},
		"flex": {"n_sa": 2, "zoom": 3, "select_grid": 3, "threshold": 48, "strategy": "attention"}}`))
	if err != nil {
		panic(err)
	}
	return c
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(c *Config)
		want  string // "" for a valid configuration
	}{
		{"golden tiny", func(c *Config) {}, ""},
		{"n_sa equal to the layers", func(c *Config) { c.Flex.NSA = 4 }, "flex.n_sa"},
		{"n_sa zero", func(c *Config) { c.Flex.NSA = 0 }, "flex.n_sa"},
		{"image not a multiple of the patch", func(c *Config) { c.Vision.ImageSize = 30 }, "vision.image_size"},
		{"odd head dim", func(c *Config) { c.Text.HiddenSize, c.Text.NumHeads = 45, 5 }, "head dim 9"},
		{"width not a multiple of heads", func(c *Config) { c.Text.NumHeads = 5 }, "text.hidden_size"},
		{"select layer out of range", func(c *Config) { c.Vision.SelectLayer = -4 }, "vision.select_layer"},
		{"negative vocabulary", func(c *Config) { c.Text.VocabSize = -1 }, "text.vocab_size"},
		{"threshold past 255", func(c *Config) { c.Flex.Threshold = 300 }, "flex.threshold"},
		{"unknown strategy", func(c *Config) { c.Flex.Strategy = "nearest" }, "flex.strategy"},
		{"topk without a ratio", func(c *Config) { c.Flex.Strategy = "topk" }, "flex.ratio"},
		{"oracle needs no ratio", func(c *Config) { c.Flex.Strategy = "oracle" }, ""},
		{"grid finer than the HR grid", func(c *Config) { c.Flex.SelectGrid = 13 }, "flex.select_grid"},
		{"zero eps", func(c *Config) { c.Text.RMSNormEps = 0 }, "text.rms_norm_eps"},
		{"a million layers", func(c *Config) { c.Text.NumLayers = 1000000 }, "text.num_layers: 1000000 is past"},
		{"a million vision layers", func(c *Config) { c.Vision.NumLayers = 1 << 20 }, "vision.num_layers"},
		{"huge image", func(c *Config) { c.Vision.ImageSize = 1048576 }, "vision.image_size: 1048576 is past"},
		{"huge vocabulary", func(c *Config) { c.Text.VocabSize = 1 << 30 }, "text.vocab_size"},
		{"huge width", func(c *Config) { c.Text.IntermediateSize = 1 << 30 }, "text.intermediate_size"},
		{"too many HR tokens", func(c *Config) { c.Vision.ImageSize, c.Vision.PatchSize, c.Flex.Zoom = 4096, 1, 2 }, "flex.zoom"},
		{"largest zoom", func(c *Config) { c.Flex.Zoom = MaxZoom }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := goldenConfig()
			c.spoil(&cfg)
			err := cfg.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("valid configuration refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v; want one naming %q", err, c.want)
			}
		})
	}
	// every problem is reported, one per line
	cfg := goldenConfig()
	cfg.Flex.NSA, cfg.Text.VocabSize, cfg.Flex.Strategy = 9, 0, "x"
	if err := cfg.Validate(); err == nil || strings.Count(err.Error(), "\n") < 2 {
		t.Errorf("three problems gave %v; want three lines", err)
	}
}

func TestParseConfigRefusesUnknownKeys(t *testing.T) {
	if _, err := ParseConfig([]byte(`{"vision": {"image_size": 32, "patch": 8}}`)); err == nil || !strings.Contains(err.Error(), "patch") {
		t.Errorf("unknown key: error %v; want one naming it", err)
	}
}
