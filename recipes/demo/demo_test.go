package demo

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"
	"github.com/flextrain/flextrain/recipes/pretrain"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model"
)

// tinyDemo loads the shipped quickstart configurations shrunk to a few steps of a tiny model on a tiny
// generated set under dir.
func tinyDemo(t *testing.T, dir string) Options {
	t.Helper()
	shared := []string{"data_path=synth://n=12,val=4,test=6,hr=96,seed=2,dir=" + filepath.Join(dir, "data"),
		"max_steps=2", "per_device_train_batch_size=4", "logging_steps=1", "dataloader_num_workers=1",
		"model.vision.image_size=32", "model.vision.hidden_size=16", "model.vision.intermediate_size=32",
		"model.vision.num_heads=2", "model.text.vocab_size=144", "model.text.hidden_size=32",
		"model.text.intermediate_size=64", "model.text.num_layers=3", "model.text.num_heads=2", "flex.select_grid=3"}
	load := func(file string, extra ...string) config.Config {
		c, err := config.Load(file, append(append([]string(nil), shared...), extra...))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	vision := load("../../configs/quickstart-vision.yaml", "output_dir="+filepath.Join(dir, "vision"))
	// Stage 1 trains on a set of its own whose test split is shorter: scoring the base model must read
	// stage 2's test images, not stage 1's images of the same names.
	base := load("../../configs/quickstart-base.yaml", "output_dir="+filepath.Join(dir, "base"),
		"model_name_or_path="+filepath.Join(dir, "vision", pretrain.ModelDir),
		"data_path=synth://n=12,val=4,test=2,hr=96,seed=3,dir="+filepath.Join(dir, "data-base"))
	flex := load("../../configs/quickstart.yaml", "output_dir="+filepath.Join(dir, "flex"),
		"model_name_or_path="+filepath.Join(dir, "base", "model"), "trainable=model.layers.2.*,model.norm.*,lm_head.*")
	return Options{Vision: &vision, Base: base, Flex: flex, Out: &bytes.Buffer{}}
}

// TestDemoPlumbing runs the three stages and the evaluation on a tiny set: every test question is scored for
// both models, per kind; a second run reuses every stage; stage 1 starts from stage 0's tower and keeps it;
// stage 2 starts from stage 1's weights with k/v_proj_hd copied from the trained k/v_proj.
func TestDemoPlumbing(t *testing.T) {
	dir := t.TempDir()
	opts := tinyDemo(t, dir)
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]eval.Report{"base": res.Base, "flex": res.Flex} {
		if r.Answers != 6 || len(r.ByKind) == 0 {
			t.Errorf("%s: %d answers scored in %d kinds; want the 6 test questions, by kind", name, r.Answers, len(r.ByKind))
		}
	}
	if res.VisionTime == 0 || res.BaseTime == 0 || res.FlexTime == 0 {
		t.Errorf("first run: training times %v, %v, %v; want every stage trained", res.VisionTime, res.BaseTime, res.FlexTime)
	}
	var table bytes.Buffer
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"base model (LR view)", "FlexAttention (α = 1)", "small", "large", "/6)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	checkStage2Start(t, opts.Flex.ModelNameOrPath, opts.Base.Model())
	tower := model.VisionPrefix + "embeddings.patch_embedding.weight"
	stage0, err := model.LoadWeights(opts.Base.ModelNameOrPath, opts.Base.Model(), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	stage1, err := model.LoadWeights(opts.Flex.ModelNameOrPath, opts.Base.Model(), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if init := model.InitWeights(opts.Base.Model(), tensor.Float32, 3407).Get(tower); equalData(stage0.Get(tower), init) || !equalData(stage1.Get(tower), stage0.Get(tower)) {
		t.Error("stage 1's tower is not stage 0's trained one")
	}
	again, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.VisionTime != 0 || again.BaseTime != 0 || again.FlexTime != 0 || again.Flex.Correct != res.Flex.Correct {
		t.Errorf("second run: training times %v, %v, %v, flex correct %d; want every stage reused and %d correct",
			again.VisionTime, again.BaseTime, again.FlexTime, again.Flex.Correct, res.Flex.Correct)
	}
}

// checkStage2Start checks that the exported base model derives k/v_proj_hd from the trained k/v_proj.
func checkStage2Start(t *testing.T, dir string, cfg model.Config) {
	t.Helper()
	w, err := model.LoadWeights(dir, cfg, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(w.Derived()); got != 2*(cfg.Text.NumLayers-cfg.Flex.NSA) {
		t.Errorf("%d derived k/v_proj_hd tensors; want %d", got, 2*(cfg.Text.NumLayers-cfg.Flex.NSA))
	}
	hd, k := w.Get("model.layers.2.self_attn.k_proj_hd.weight"), w.Get("model.layers.2.self_attn.k_proj.weight")
	init := model.InitWeights(cfg, tensor.Float32, 3407).Get("model.layers.2.self_attn.k_proj.weight")
	if !equalData(hd, k) || equalData(k, init) {
		t.Error("k_proj_hd is not a copy of the trained k_proj")
	}
}

func equalData(a, b *tensor.Dense) bool {
	x, y := a.Data().([]float32), b.Data().([]float32)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return len(x) == len(y)
}

func TestDemoRefusesConfigs(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		mutate func(o *Options)
		want   string
	}{
		{"no max_steps", func(o *Options) { o.Base.MaxSteps = -1 }, "stage 1: max_steps"},
		{"no stage 2 base path", func(o *Options) { o.Flex.ModelNameOrPath = "" }, "stage 2: model_name_or_path"},
		{"stage 1 from other weights", func(o *Options) { o.Base.ModelNameOrPath = "w.safetensors" }, "stage 1: model_name_or_path must be stage 0's"},
		{"stage 1 from weights, no stage 0", func(o *Options) { o.Vision = nil }, "stage 1: model_name_or_path must be empty"},
		{"stage 0 without max_steps", func(o *Options) { o.Vision.MaxSteps = 0 }, "stage 0: max_steps"},
		{"shared output", func(o *Options) { o.Flex.OutputDir = o.Base.OutputDir }, "share output_dir"},
		{"other model", func(o *Options) { o.Flex.Arch.Text.IntermediateSize = 128 }, "model: sections differ"},
	}
	for _, tt := range tests {
		opts := tinyDemo(t, dir)
		tt.mutate(&opts)
		_, err := Run(context.Background(), opts)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Run = %v; want ErrConfig naming %q", tt.name, err, tt.want)
		}
	}
}
