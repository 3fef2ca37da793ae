package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/inference"

	"github.com/flextrain/flextrain/config"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
	"github.com/flextrain/flextrain/train"
)

// run is a short training run on a small synthetic set: its configuration file, the data and the checkpoint.
type run struct {
	config  string // the YAML file
	cfg     config.Config
	data    synth.Manifest
	ckpt    string // output_dir/checkpoint-3
	metrics string // output_dir
}

// fixtureYAML is a model small enough for three steps to take about a second on one core; %s are the paths.
const fixtureYAML = `# flextrain fit --config run.yaml
output_dir: %s
tokenizer_path: %s
data_path: %s
image_folder: %s
eval_data_path: %s
max_steps: 3
per_device_train_batch_size: 4
learning_rate: 1.0e-2
logging_steps: 1
eval_steps: 3
save_steps: 0
seed: 5
flex: {n_sa: 1, zoom: 3, select_grid: 3, threshold: 48, strategy: attention, alpha_warmup_ratio: 0}
model:
  vision: {image_size: 32, patch_size: 8, hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 2, layer_norm_eps: 1.0e-5, select_layer: -2}
  text: {vocab_size: 144, hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 2, rms_norm_eps: 1.0e-5, rope_theta: 10000}
trainable: ["model.layers.1.*", "model.norm.*", "lm_head.*"]
`

// newRun generates the data with `flextrain data synth`, writes the configuration and trains.
func newRun(t *testing.T) run {
	t.Helper()
	dir := t.TempDir()
	var out bytes.Buffer
	if err := dataMain([]string{"synth", "--out", filepath.Join(dir, "data"), "--n", "12", "--val", "6", "--test", "0",
		"--hr", "96", "--text-frac", "0.2", "--json"}, &out); err != nil {
		t.Fatalf("data synth: %v\n%s", err, out.String())
	}
	o := synth.DefaultOptions()
	o.Dir, o.N, o.ValN, o.TestN, o.HRSize, o.TextFrac = filepath.Join(dir, "data"), 12, 6, 0, 96, 0.2
	m, err := synth.Generate(o) // reuses what the command wrote, for its manifest
	if err != nil || !m.Reused {
		t.Fatalf("synth.Generate after data synth: reused %v, %v; want the command's dataset", m.Reused, err)
	}
	r := run{config: filepath.Join(dir, "run.yaml"), data: m, metrics: filepath.Join(dir, "out")}
	yaml := []byte(fmt.Sprintf(fixtureYAML, r.metrics, m.Tokenizer, m.Train, m.ImageFolder, m.Val))
	if err := os.WriteFile(r.config, yaml, 0o644); err != nil {
		t.Fatal(err)
	}
	if r.cfg, err = config.Load(r.config, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := train.Run(context.Background(), r.cfg, train.RunOptions{Resume: "none"}); err != nil {
		t.Fatalf("train.Run: %v", err)
	}
	r.ckpt = filepath.Join(r.metrics, "checkpoint-3")
	return r
}

// TestCommandsOnTrainedRun runs the commands that read a trained run on one shared run.
func TestCommandsOnTrainedRun(t *testing.T) {
	r := newRun(t)
	t.Run("Export", func(t *testing.T) { testExport(t, r) })
	t.Run("ExportTrainableOnly", func(t *testing.T) { testExportTrainableOnly(t, r) })
	t.Run("ExportRefusesCorrupt", func(t *testing.T) { testExportRefusesCorrupt(t, r) })
	t.Run("Inspect", func(t *testing.T) { testInspect(t, r) })
	t.Run("InspectCorrupt", func(t *testing.T) { testInspectCorrupt(t, r) })
	t.Run("InspectSwappedShape", func(t *testing.T) { testInspectSwappedShape(t, r) })
	t.Run("InspectExport", func(t *testing.T) { testInspectExport(t, r) })
	t.Run("Predict", func(t *testing.T) { testPredict(t, r) })
	t.Run("Eval", func(t *testing.T) { testEval(t, r) })
	t.Run("PlotRun", func(t *testing.T) { testPlotRun(t, r) })
	t.Run("Selection", func(t *testing.T) { testSelection(t, r) })
	t.Run("DataCheck", func(t *testing.T) { testDataCheck(t, r) })
	t.Run("DataInspect", func(t *testing.T) { testDataInspect(t, r) })
}

// testExport: `export` of an output_dir writes its newest checkpoint; the file loads as the model, with the
// checkpoint's bytes for the trained tensors and the seeded initialisation's for the others.
func testExport(t *testing.T, r run) {
	dir := filepath.Join(t.TempDir(), "export")
	var out bytes.Buffer
	if err := exportMain([]string{"--checkpoint", r.metrics, "--out", dir}, &out); err != nil {
		t.Fatalf("export: %v", err)
	}
	if want := "exported step 3 of " + r.ckpt; !strings.Contains(out.String(), want) {
		t.Errorf("export printed %q; want it to contain %q", out.String(), want)
	}
	if _, err := model.LoadWeights(dir, r.cfg.Model(), tensor.Float32); err != nil {
		t.Errorf("model.LoadWeights(%s): %v", dir, err)
	}
	file, err := safetensors.ReadFile(filepath.Join(dir, inference.ExportModelFile))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoints.Load(r.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	base := model.InitWeights(r.cfg.Model(), tensor.Float32, uint64(r.cfg.Seed)).Tensors()
	for name, got := range file.Tensors {
		want, from := base[name], "seeded initialisation"
		if ck.Weights[name].Data != nil {
			want, from = ck.Weights[name], "checkpoint"
		}
		if !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: exported bytes differ from the %s's", name, from)
		}
	}
	if got, want := len(file.Tensors), len(model.Shapes(r.cfg.Model())); got != want {
		t.Errorf("export holds %d tensors; want the model's %d", got, want)
	}
	var cfg map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, inference.ExportConfigFile)), &cfg); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	if cfg["model_type"] != "llava" || cfg["hidden_size"] != float64(r.cfg.Arch.Text.HiddenSize) {
		t.Errorf("config.json model_type %v, hidden_size %v; want llava, %d", cfg["model_type"], cfg["hidden_size"], r.cfg.Arch.Text.HiddenSize)
	}
}

// testExportTrainableOnly: --trainable-only writes the checkpoint's tensors only.
func testExportTrainableOnly(t *testing.T, r run) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := exportMain([]string{"--checkpoint", r.ckpt, "--out", dir, "--trainable-only"}, &out); err != nil {
		t.Fatalf("export --trainable-only: %v", err)
	}
	file, err := safetensors.ReadFile(filepath.Join(dir, inference.ExportTrainableFile))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoints.Load(r.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]string, 0, len(ck.Weights))
	for name := range ck.Weights {
		want = append(want, name)
	}
	slices.Sort(want)
	if got := file.Names(); !slices.Equal(got, want) {
		t.Errorf("trainable-only export holds %v; want %v", got, want)
	}
}

// testExportRefusesCorrupt: a damaged checkpoint is refused, named, and nothing is written.
func testExportRefusesCorrupt(t *testing.T, r run) {
	bad := corruptCopy(t, r.ckpt)
	dir := filepath.Join(t.TempDir(), "export")
	var out bytes.Buffer
	err := exportMain([]string{"--checkpoint", bad, "--out", dir}, &out)
	if !errors.Is(err, checkpoints.ErrCorrupt) || !strings.Contains(err.Error(), "weights.st.zst") {
		t.Errorf("export of a corrupt checkpoint: err = %v; want ErrCorrupt naming weights.st.zst", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export of a corrupt checkpoint created %s (stat: %v)", dir, err)
	}
	if err := exportMain([]string{"--checkpoint", t.TempDir(), "--out", dir}, &out); !errors.Is(err, checkpoints.ErrNotFound) {
		t.Errorf("export of a folder without checkpoint: err = %v; want ErrNotFound", err)
	}
}

// corruptCopy copies a checkpoint and flips one bit in the middle of its weights file.
func corruptCopy(t *testing.T, ckpt string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), filepath.Base(ckpt))
	if err := os.CopyFS(dir, os.DirFS(ckpt)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "weights.st.zst")
	b := readFile(t, path)
	b[len(b)/2] ^= 0x04
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
