package inference

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/pretrained"
	"github.com/flextrain/flextrain/train"
)

// The published-layout fixture (scripts/make-llava-fixtures.py) and the tiny dataset it fits.
var (
	publishedLLaVA = filepath.Join("..", "testdata", "llava", "llava-v1.5-tiny")
	tinyData       = filepath.Join("..", "testdata", "tiny")
)

// publishedRun is a fine-tuning configuration whose model_name_or_path is the published fixture folder,
// with no model block and no tokenizer_path: both come from the folder.
func publishedRun(t *testing.T, sets ...string) (config.Config, error) {
	t.Helper()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	yaml := "output_dir: " + filepath.Join(t.TempDir(), "run") + "\nmodel_name_or_path: " + abs(publishedLLaVA) +
		"\ntokenizer_path: \"\"\ndata_path: " + abs(filepath.Join(tinyData, "train.json")) +
		"\nimage_folder: " + abs(filepath.Join(tinyData, "images")) +
		"\nmodel_max_length: 128\nmax_steps: 2\nper_device_train_batch_size: 2\nlearning_rate: 1.0e-2\nsave_steps: 0\neval_steps: 0\n" +
		"flex: {n_sa: 1, zoom: 3, select_grid: 3, threshold: 48, strategy: attention, alpha_warmup_ratio: 0}\n"
	path := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return config.Load(path, sets)
}

// TestFineTuneFromPublishedFolder: a run from a published LLaVA folder takes its shape and tokenizer from
// the folder, keeps its frozen weights (widened from float16, bit for bit), trains the FlexAttention
// layers, and its llava-hf export answers as its checkpoint does.
func TestFineTuneFromPublishedFolder(t *testing.T) {
	cfg, err := publishedRun(t)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	f, err := pretrained.Open(publishedLLaVA, pretrained.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Arch.Text != f.Config.Text || cfg.Arch.Vision != f.Config.Vision || cfg.TokenizerPath != cfg.ModelNameOrPath {
		t.Fatalf("arch %+v, tokenizer %q; want the folder's %+v and the folder", cfg.Arch, cfg.TokenizerPath, f.Config)
	}
	if _, err := train.Run(context.Background(), cfg, train.RunOptions{Resume: "none"}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	tr, err := Load(filepath.Join(cfg.OutputDir, "checkpoint-2"), Options{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	base, err := model.FromTensors(cfg.Model(), tensor.Float32, f.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.mm_projector.0.weight"} {
		if !slices.Equal(floats(t, tr.Weights, name), floats(t, base, name)) {
			t.Errorf("frozen %s differs from the folder's", name)
		}
	}
	if _, ok := tr.Trained["model.layers.2.self_attn.k_proj_hd.weight"]; !ok {
		t.Errorf("the checkpoint holds %d tensors, not layer 2's k_proj_hd", len(tr.Trained))
	}
	q := valQueries(t, synth.Manifest{Val: filepath.Join(tinyData, "val.json"), ImageFolder: filepath.Join(tinyData, "images")})[:3]
	want, err := tr.Predict(q, 6)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Export(tr, dir, ExportOptions{Format: pretrained.FormatLLaVAHF}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	back, err := Load(dir, Options{})
	if err != nil {
		t.Fatalf("Load(export): %v", err)
	}
	if got, err := back.Predict(q, 6); err != nil || !slices.Equal(got, want) {
		t.Errorf("the llava-hf export answers %q (%v); the checkpoint %q", got, err, want)
	}
}

// TestPublishedFolderContradiction: a model block that contradicts the folder is refused, naming the key.
func TestPublishedFolderContradiction(t *testing.T) {
	_, err := publishedRun(t, "model.text.hidden_size=32")
	if err == nil || !strings.Contains(err.Error(), "text.hidden_size") || !strings.Contains(err.Error(), "contradict") {
		t.Errorf("a model block against the folder: err = %v; want one naming text.hidden_size", err)
	}
}

// TestPredictPlanOfFolder: the plan of predict on the published float16 folder counts the weights as
// LoadFolder holds them (its frozen matrices in 16 bits) and, for this base LLaVA (LR view), no HR features;
// the prompt defaults to the image's tokens and 64 more.
func TestPredictPlanOfFolder(t *testing.T) {
	tr, err := LoadFolder(publishedLLaVA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	held := tr.Weights.HalfBytes()
	for _, name := range tr.Weights.Names() {
		if d := tr.Weights.Get(name); d != nil {
			held += 4 * int64(d.Len())
		}
	}
	if held == tr.Weights.HalfBytes() || tr.Weights.HalfBytes() == 0 {
		t.Fatalf("the folder's store holds %d bytes, %d of them 16-bit: want both kinds", held, tr.Weights.HalfBytes())
	}
	p, err := PredictPlan(publishedLLaVA, Options{}, 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	m := tr.Config.Model()
	_, n, _, _ := m.Grid()
	cache := int64(4 * 2 * m.Text.NumLayers * (n + 64 + 8) * m.Text.HiddenSize)
	got := map[string]int64{}
	for _, part := range p.Parts {
		got[part.Name] = part.Bytes
	}
	if got["weights (16-bit ones mapped)"] != held || got["key and value cache"] != cache {
		t.Errorf("plan %+v; want weights of %d bytes and a cache of %d", p.Parts, held, cache)
	}
	if _, ok := got["HR features"]; ok {
		t.Errorf("a base LLaVA answers from its LR view, but the plan counts HR features: %+v", p.Parts)
	}
	if _, err := PredictPlan(filepath.Join(t.TempDir(), "none"), Options{}, 0, 8); err == nil {
		t.Error("the plan of a missing folder: no error")
	}
}
