package pretrained

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// TestOpenLayouts: each published layout opens, with its layout, configuration and folders.
func TestOpenLayouts(t *testing.T) {
	hfConfig := fixtureConfig
	hfConfig.Text.VocabSize = 192
	clipConfig := model.Config{Vision: fixtureConfig.Vision}
	sibling, _ := filepath.Abs(clipFixture)
	for _, tt := range []struct {
		dir, tokenizer, visionDir, visionConfig string
		layout                                  Layout
		cfg                                     model.Config
		hf                                      *HFTokens
		tokens                                  TokenIDs
	}{
		{llavaST, llavaST, llavaST, filepath.Join(sibling, ConfigFile), LayoutLLaVA, fixtureConfig, nil, TokenIDs{1, 2, 0}},
		{llavaHF, llavaHF, llavaHF, filepath.Join(llavaHF, ConfigFile), LayoutLLaVAHF, hfConfig, &HFTokens{144, 145}, TokenIDs{1, 2, 145}},
		{clipFixture, "", clipFixture, filepath.Join(clipFixture, ConfigFile), LayoutCLIP, clipConfig, nil, TokenIDs{1, 2, -1}},
	} {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			f := open(t, tt.dir, Options{})
			if f.Layout != tt.layout || f.Config != tt.cfg {
				t.Errorf("layout %s, config %+v; want %s, %+v", f.Layout, f.Config, tt.layout, tt.cfg)
			}
			if f.TokenizerDir != tt.tokenizer || f.VisionDir != tt.visionDir || f.VisionConfigFile != tt.visionConfig {
				t.Errorf("tokenizer %q, vision %q from %q; want %q, %q from %q", f.TokenizerDir, f.VisionDir,
					f.VisionConfigFile, tt.tokenizer, tt.visionDir, tt.visionConfig)
			}
			if f.Tokens != tt.tokens || (f.HFTokens == nil) != (tt.hf == nil) || (tt.hf != nil && *f.HFTokens != *tt.hf) {
				t.Errorf("tokens %+v, llava-hf tokens %v; want %+v, %v", f.Tokens, f.HFTokens, tt.tokens, tt.hf)
			}
			if tt.layout != LayoutCLIP {
				if _, err := model.FromTensors(f.Config, tensor.Float32, f.Tensors); err != nil {
					t.Errorf("model.FromTensors: %v", err)
				}
			}
		})
	}
}

// TestCLIPVisionModelConfig: a CLIPVisionModel's flat config, missing keys at CLIPVisionConfig's defaults,
// describes the same tower as CLIPModel's vision_config.
func TestCLIPVisionModelConfig(t *testing.T) {
	dir := copyFolder(t, clipFixture)
	writeTestJSON(t, filepath.Join(dir, ConfigFile), map[string]any{"model_type": "clip_vision_model", "hidden_size": 12,
		"intermediate_size": 24, "num_attention_heads": 2, "num_hidden_layers": 2, "image_size": 32, "patch_size": 8})
	if f := open(t, dir, Options{}); f.Config != (model.Config{Vision: fixtureConfig.Vision}) {
		t.Errorf("config %+v; want the tower %+v", f.Config, fixtureConfig.Vision)
	}
	patchConfig(t, dir, "image_size", nil)
	_, err := Open(dir, Options{})
	wantError(t, err, "position_embedding.weight", "shape [17 12]", "gives [785 12]") // image_size 224 (the default) in patches of 8
}

// TestSameWeightsBothLayouts: liuhaotian's and llava-hf's names of the same weights give the same model
// tensors, bit for bit, and the same configuration but for llava-hf's padded vocabulary, whose first 144
// rows are the original ones.
func TestSameWeightsBothLayouts(t *testing.T) {
	a, b := open(t, llavaST, Options{}), open(t, llavaHF, Options{})
	cfg := b.Config
	cfg.Text.VocabSize = a.Config.Text.VocabSize
	if cfg != a.Config {
		t.Errorf("llava-hf config %+v; want liuhaotian's %+v but for the vocabulary", b.Config, a.Config)
	}
	if got, want := sortedKeys(b.Tensors), sortedKeys(a.Tensors); !slices.Equal(got, want) {
		t.Fatalf("llava-hf tensors %v\nwant %v", got, want)
	}
	for name, x := range a.Tensors {
		y := b.Tensors[name]
		if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
			y = safetensors.Tensor{DType: y.DType, Shape: x.Shape, Data: y.Data[:len(x.Data)]}
		}
		if !sameTensor(x, y) {
			t.Errorf("%s: llava-hf's %s%v differs from liuhaotian's %s%v", name, y.DType, y.Shape, x.DType, x.Shape)
		}
	}
}

// TestCLIPSuppliesTower: a LLaVA folder without the tower takes it from the CLIP folder named by
// Options.VisionTower, by mm_vision_tower as a path, or beside it; the tower equals the one the
// liuhaotian folder holds, and Options.VisionTower replaces a tower inside the folder.
func TestCLIPSuppliesTower(t *testing.T) {
	want := open(t, llavaST, Options{})
	bare := towerless(t)
	withSibling := filepath.Join(filepath.Dir(bare), "..", "sib", "llava")
	copyInto(t, bare, withSibling)
	copyInto(t, clipFixture, filepath.Join(filepath.Dir(withSibling), "clip-vit-tiny"))
	byPath := copyFolder(t, bare)
	clipAbs, _ := filepath.Abs(clipFixture)
	patchConfig(t, byPath, "mm_vision_tower", clipAbs)
	for _, tt := range []struct {
		name, dir, visionDir string
		opts                 Options
	}{
		{"Options.VisionTower", bare, clipFixture, Options{VisionTower: clipFixture}},
		{"mm_vision_tower path", byPath, clipAbs, Options{}},
		{"sibling folder", withSibling, filepath.Join(filepath.Dir(withSibling), "clip-vit-tiny"), Options{}},
		{"replaces the folder's tower", llavaST, clipFixture, Options{VisionTower: clipFixture}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := open(t, tt.dir, tt.opts)
			if f.VisionDir != tt.visionDir || f.Config != want.Config {
				t.Errorf("tower from %q, config %+v; want %q, %+v", f.VisionDir, f.Config, tt.visionDir, want.Config)
			}
			for name, x := range want.Tensors {
				if y := f.Tensors[name]; !slices.Equal(float32s(t, x), float32s(t, y)) {
					t.Errorf("%s: the CLIP folder's values differ from the LLaVA folder's", name)
				}
			}
		})
	}
	f := open(t, llavaST, Options{VisionTower: clipFixture})
	if n := countIgnored(f, "replaced by the tower of Options.VisionTower"); n != len(towerShapes(f.Config.Vision)) {
		t.Errorf("%d tower tensors of the folder listed as replaced; want %d", n, len(towerShapes(f.Config.Vision)))
	}
}

// towerless writes the liuhaotian fixture without its tower (one model.safetensors) into a temp folder.
func towerless(t *testing.T) string {
	t.Helper()
	dir := copyFolder(t, llavaST, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", SafetensorsIndex)
	all, err := safetensors.ReadSharded(filepath.Join(llavaST, SafetensorsIndex))
	if err != nil {
		t.Fatal(err)
	}
	for name := range all.Tensors {
		if strings.HasPrefix(name, model.VisionPrefix) {
			delete(all.Tensors, name)
		}
	}
	if err := safetensors.WriteFile(filepath.Join(dir, SafetensorsSingle), all); err != nil {
		t.Fatal(err)
	}
	return dir
}

func countIgnored(f *Folder, reason string) int {
	n := 0
	for _, ig := range f.Ignored {
		if strings.Contains(ig.Reason, reason) {
			n++
		}
	}
	return n
}

// TestIgnored: the tensors read but not used are listed with their reasons, never refused.
func TestIgnored(t *testing.T) {
	for _, tt := range []struct {
		dir   string
		names []string
	}{
		{llavaST, []string{
			"model.layers.0.self_attn.rotary_emb.inv_freq", "model.layers.1.self_attn.rotary_emb.inv_freq",
			"model.layers.2.self_attn.rotary_emb.inv_freq", model.VisionPrefix + "embeddings.position_ids",
			model.VisionPrefix + "post_layernorm.bias", model.VisionPrefix + "post_layernorm.weight"}},
		{llavaHF, []string{"vision_tower.vision_model.post_layernorm.bias", "vision_tower.vision_model.post_layernorm.weight"}},
		{clipFixture, []string{"logit_scale", "text_model.embeddings.position_ids", "text_projection.weight",
			"vision_model.embeddings.position_ids", "vision_model.post_layernorm.bias", "visual_projection.weight"}},
	} {
		t.Run(filepath.Base(tt.dir), func(t *testing.T) {
			f := open(t, tt.dir, Options{})
			var got []string
			for _, ig := range f.Ignored {
				if ig.Reason == "" || ig.Folder != tt.dir {
					t.Errorf("%+v: want a reason and the folder %s", ig, tt.dir)
				}
				got = append(got, ig.Name)
			}
			for _, name := range tt.names {
				if !slices.Contains(got, name) {
					t.Errorf("ignored %v\nlacks %s", got, name)
				}
			}
			if tt.dir != clipFixture && len(got) != len(tt.names) {
				t.Errorf("ignored %v; want exactly %v", got, tt.names)
			}
		})
	}
}

// TestShapeContradiction: a tensor whose shape contradicts config.json is named with both shapes.
func TestShapeContradiction(t *testing.T) {
	dir := copyFolder(t, llavaHF)
	patchConfig(t, dir, "text_config.intermediate_size", 20)
	_, err := Open(dir, Options{})
	wantError(t, err, `"language_model.model.layers.0.mlp.up_proj.weight" (model.layers.0.mlp.up_proj.weight)`,
		"shape [24 16], but", "gives [20 16]", SafetensorsIndex)
}

// TestIndexOutsideFolder: a shard index that points outside its folder is refused.
func TestIndexOutsideFolder(t *testing.T) {
	dir := copyFolder(t, llavaST)
	index := readJSON(t, filepath.Join(dir, SafetensorsIndex))
	for name := range index["weight_map"].(map[string]any) {
		index["weight_map"].(map[string]any)[name] = "../model-00001-of-00002.safetensors"
		break
	}
	writeTestJSON(t, filepath.Join(dir, SafetensorsIndex), index)
	_, err := Open(dir, Options{VisionTower: clipFixture})
	wantError(t, err, "leaves the index's folder")
}

func writeTestJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := writeJSON(path, v); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedKeys: keys that change the model in a way flextrain does not compute are refused, naming the
// file, the key and the reason; harmless unknown keys are not.
func TestRefusedKeys(t *testing.T) {
	for _, tt := range []struct {
		dir, key string
		value    any
		want     []string // empty: Open succeeds
	}{
		{llavaST, "mm_use_im_start_end", true, []string{`"mm_use_im_start_end": true is not supported`, "<im_start>"}},
		{llavaST, "num_key_value_heads", 1, []string{`"num_key_value_heads": 1 differs`, "no grouped-query attention"}},
		{llavaST, "tie_word_embeddings", true, []string{`"tie_word_embeddings": true is not supported`, "lm_head"}},
		{llavaST, "mm_use_im_patch_token", nil, []string{`"mm_use_im_patch_token": absent, which the loader takes as true`, "<im_patch>"}},
		{llavaST, "mm_projector_type", "linear", []string{`"mm_projector_type": "linear" is not supported`, "mlp2x_gelu"}},
		{llavaST, "mm_vision_select_feature", "cls_patch", []string{"mm_vision_select_feature", "CLS"}},
		{llavaST, "image_aspect_ratio", "anyres", []string{"image_aspect_ratio", "pads"}},
		{llavaST, "rope_scaling", map[string]any{"type": "linear", "factor": 2}, []string{"rope_scaling", `"linear"`}},
		{llavaST, "hidden_act", "gelu", []string{"hidden_act", "SwiGLU"}},
		{llavaST, "mm_hidden_size", 16, []string{"mm_hidden_size", "contradicts the tower's hidden_size 12"}},
		{llavaST, "model_type", "llava_mistral", []string{"model_type", "llava_mistral"}},
		{llavaST, "some_new_flag", true, nil},
		{llavaHF, "text_config.num_key_value_heads", 1, []string{`"text_config.num_key_value_heads"`, "grouped-query"}},
		{llavaHF, "vision_feature_select_strategy", "full", []string{"vision_feature_select_strategy", "CLS"}},
		{llavaHF, "vision_feature_layer", []any{-2, -5}, []string{"vision_feature_layer", "a list"}},
		{llavaHF, "projector_hidden_act", "relu", []string{"projector_hidden_act", "GELU"}},
		{llavaHF, "text_config.tie_word_embeddings", true, []string{"text_config.tie_word_embeddings"}},
		{llavaHF, "vision_config.hidden_act", "gelu", []string{"vision_config.hidden_act", "quick_gelu"}},
		{llavaHF, "text_config.model_type", "mistral", []string{"text_config.model_type", "LLaMA"}},
		{llavaHF, "quantization_config", map[string]any{"load_in_4bit": true}, []string{"quantization_config", "quantised"}},
	} {
		t.Run(tt.key, func(t *testing.T) {
			dir := copyFolder(t, tt.dir)
			patchConfig(t, dir, tt.key, tt.value)
			_, err := Open(dir, Options{VisionTower: clipFixture})
			if tt.want == nil {
				if err != nil {
					t.Errorf("Open: %v", err)
				}
				return
			}
			wantError(t, err, append(tt.want, filepath.Join(dir, ConfigFile))...)
		})
	}
}

// TestTowerNotFound: a liuhaotian folder with no CLIP folder anywhere is refused with everything tried.
func TestTowerNotFound(t *testing.T) {
	dir := copyFolder(t, llavaST)
	_, err := Open(dir, Options{})
	wantError(t, err, "no vision tower configuration found", "has no vision_config", `as a path (mm_vision_tower "openai/clip-vit-tiny")`,
		"its sibling folder", filepath.Join(filepath.Dir(dir), "clip-vit-tiny"), "Options.VisionTower")
	_, err = Open(towerless(t), Options{VisionTower: llavaST})
	wantError(t, err, "Options.VisionTower", "a llava config, not a CLIP one")
}

// TestTorchSameAsSafetensors: the folder of PyTorch .bin shards (torch.save by PyTorch itself) holds the
// tensors of the safetensors folder, bit for bit.
func TestTorchSameAsSafetensors(t *testing.T) {
	a, b := open(t, llavaBin, Options{}), open(t, llavaST, Options{})
	for name, x := range b.Tensors {
		if !sameTensor(x, a.Tensors[name]) {
			t.Errorf("%s differs between the .bin and the safetensors folders", name)
		}
	}
}

// TestTorchPlumbing: with a reader in place, the .bin folder's index goes to it with the folder's limit,
// and a folder with both formats is read from its safetensors files.
func TestTorchPlumbing(t *testing.T) {
	saved := readTorchSharded
	defer func() { readTorchSharded = saved }()
	var gotPath string
	var gotLimit int64
	readTorchSharded = func(path string, limit int64) (map[string]safetensors.Tensor, error) {
		gotPath, gotLimit = path, limit
		f, err := safetensors.ReadShardedLimit(filepath.Join(llavaST, SafetensorsIndex), limit)
		if err != nil {
			return nil, err
		}
		return f.Tensors, nil
	}
	f := open(t, llavaBin, Options{})
	if gotPath != filepath.Join(llavaBin, TorchIndex) || gotLimit != folderLimit(f.Config) || f.WeightsFile != gotPath {
		t.Errorf("reader called with %s, %d (weights file %s); want %s, %d", gotPath, gotLimit, f.WeightsFile,
			filepath.Join(llavaBin, TorchIndex), folderLimit(f.Config))
	}
	both := copyFolder(t, llavaBin)
	copyInto(t, llavaST, both)
	gotPath = ""
	if f := open(t, both, Options{VisionTower: clipFixture}); gotPath != "" || f.WeightsFile != filepath.Join(both, SafetensorsIndex) {
		t.Errorf("a folder with both formats read %q (reader called with %q); want its safetensors index", f.WeightsFile, gotPath)
	}
}

// TestNoWeights: a folder without weight files names what it looked for.
func TestNoWeights(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(llavaHF, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, Options{})
	wantError(t, err, "holds no weights", SafetensorsIndex, TorchSingle)
}
