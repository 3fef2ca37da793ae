package pretrained

import (
	"strings"
	"testing"

	"github.com/flextrain/flextrain/model"
)

// TestFlexSettings: the flex block is read as written; without it, the official checkpoint's extra block
// gives zoom and threshold and n_sa is the first layer with HR projections; settings contradicting the
// tower or the tensors are refused.
func TestFlexSettings(t *testing.T) {
	cfg, ts := flexConfig(), initTensors(flexConfig())
	dir := t.TempDir()
	if err := Write(dir, FormatLLaVA, cfg, ts, writeOpts("")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, tt := range []struct {
		name  string
		patch map[string]any // key → value, nil deletes
		want  model.FlexConfig
		err   []string
	}{
		{"flex block", nil, cfg.Flex, nil},
		{"extra block", map[string]any{"flex": nil},
			model.FlexConfig{NSA: 1, Zoom: 2, SelectGrid: 8, Threshold: 40, Strategy: "attention"}, nil},
		{"neither", map[string]any{"flex": nil, "extra": nil},
			model.FlexConfig{NSA: 1, Zoom: 3, SelectGrid: 9, Threshold: 48, Strategy: "attention"}, nil},
		{"hd_layers", map[string]any{"flex.hd_layers": []any{2}}, model.FlexConfig{}, []string{`"flex.hd_layers": [2] contradicts`, "layers [1 2]"}},
		{"lowres_size", map[string]any{"flex.lowres_size": 336}, model.FlexConfig{}, []string{`"flex.lowres_size": 336 contradicts`}},
		{"n_sa", map[string]any{"flex.n_sa": 2}, model.FlexConfig{}, []string{"model.layers.1.self_attn.k_proj_hd.weight", "layers before n_sa = 2"}},
		{"n_sa absent", map[string]any{"flex.n_sa": nil}, model.FlexConfig{}, []string{`"flex.n_sa": absent`}},
		{"strategy", map[string]any{"flex.strategy": "best"}, model.FlexConfig{}, []string{"flex.strategy", `"best"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := copyFolder(t, dir)
			for key, value := range tt.patch {
				patchConfig(t, d, key, value)
			}
			f, err := Open(d, Options{})
			if tt.err != nil {
				wantError(t, err, tt.err...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Config.Flex != tt.want || f.FlexFromFile != (tt.name == "flex block") {
				t.Errorf("flex %+v (from file %v); want %+v", f.Config.Flex, f.FlexFromFile, tt.want)
			}
		})
	}
}

// TestNames: llava-hf's names, as published and as transformers writes them from 4.52 on, and CLIP's map
// to flextrain's; hfName maps back to the published ones.
func TestNames(t *testing.T) {
	for _, tt := range []struct {
		stored string
		layout Layout
		want   string
	}{
		{"language_model.model.layers.3.mlp.up_proj.weight", LayoutLLaVAHF, "model.layers.3.mlp.up_proj.weight"},
		{"model.language_model.layers.3.mlp.up_proj.weight", LayoutLLaVAHF, "model.layers.3.mlp.up_proj.weight"},
		{"language_model.lm_head.weight", LayoutLLaVAHF, "lm_head.weight"},
		{"lm_head.weight", LayoutLLaVAHF, "lm_head.weight"},
		{"multi_modal_projector.linear_2.bias", LayoutLLaVAHF, "model.mm_projector.2.bias"},
		{"model.multi_modal_projector.linear_1.weight", LayoutLLaVAHF, "model.mm_projector.0.weight"},
		{"vision_tower.vision_model.pre_layrnorm.weight", LayoutLLaVAHF, model.VisionPrefix + "pre_layrnorm.weight"},
		{"model.vision_tower.vision_model.pre_layrnorm.weight", LayoutLLaVAHF, model.VisionPrefix + "pre_layrnorm.weight"},
		{"vision_model.encoder.layers.0.mlp.fc1.bias", LayoutCLIP, model.VisionPrefix + "encoder.layers.0.mlp.fc1.bias"},
		{model.VisionPrefix + "pre_layrnorm.weight", LayoutLLaVA, model.VisionPrefix + "pre_layrnorm.weight"},
	} {
		got := flextrainName(tt.stored, renames(tt.layout))
		if got != tt.want {
			t.Errorf("%s (%s) → %s; want %s", tt.stored, tt.layout, got, tt.want)
		}
		if back := hfName(got); tt.layout == LayoutLLaVAHF && !isPublishedHF(back) {
			t.Errorf("hfName(%s) = %s: not a published llava-hf name", got, back)
		}
	}
}

func isPublishedHF(name string) bool {
	for _, r := range hfPublished {
		if strings.HasPrefix(name, r.from) {
			return true
		}
	}
	return false
}
