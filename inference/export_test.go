package inference

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/pretrained"
	"github.com/flextrain/flextrain/train"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// trainedFixture is a short run on a small synthetic set, whose checkpoint the export, predict and
// evaluation tests read.
type trainedFixture struct {
	cfg      config.Config
	ckpt     string                        // output_dir/checkpoint-<steps>
	base     map[string]safetensors.Tensor // the base weights the run started from (model_name_or_path)
	manifest synth.Manifest
}

// fixtureModel is a model small enough for a run of a few steps to take about a second on one core.
const fixtureModel = `
flex: {n_sa: 1, zoom: 3, select_grid: 3, threshold: 48, strategy: attention, alpha_warmup_ratio: 0}
model:
  vision: {image_size: 32, patch_size: 8, hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 2, layer_norm_eps: 1.0e-5, select_layer: -2}
  text: {vocab_size: 144, hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 2, rms_norm_eps: 1.0e-5, rope_theta: 10000}
trainable: ["model.layers.1.*", "model.norm.*", "lm_head.*"]
`

// newTrainedFixture generates the data, writes base weights drawn from another seed than the run's, and
// trains for two steps.
func newTrainedFixture(t *testing.T) trainedFixture {
	t.Helper()
	dir := t.TempDir()
	o := synth.DefaultOptions()
	o.Dir, o.N, o.ValN, o.TestN, o.HRSize, o.Zoom, o.TextFrac, o.Clutter = filepath.Join(dir, "data"), 12, 6, 0, 96, 3, 0.2, 2
	m, err := synth.Generate(o)
	if err != nil {
		t.Fatalf("synth.Generate: %v", err)
	}
	yaml := "output_dir: " + filepath.Join(dir, "run") + "\ntokenizer_path: " + m.Tokenizer + "\ndata_path: " + m.Train +
		"\nimage_folder: " + m.ImageFolder + "\nmodel_name_or_path: " + filepath.Join(dir, "base.safetensors") +
		"\nmax_steps: 2\nper_device_train_batch_size: 4\nlearning_rate: 1.0e-2\nsave_steps: 0\neval_steps: 0\nseed: 5\n" + fixtureModel
	cfgPath := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	base := model.InitWeights(cfg.Model(), tensor.Float32, 99).Tensors()
	if err := checkpoints.WriteSafetensors(cfg.ModelNameOrPath, base, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := train.Run(context.Background(), cfg, train.RunOptions{Resume: "none"}); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return trainedFixture{cfg: cfg, ckpt: filepath.Join(cfg.OutputDir, "checkpoint-2"), base: base, manifest: m}
}

// TestTrainedModel runs the tests that need a trained checkpoint on one shared run.
func TestTrainedModel(t *testing.T) {
	f := newTrainedFixture(t)
	tr, err := Load(f.ckpt, Options{})
	if err != nil {
		t.Fatalf("Load(%s): %v", f.ckpt, err)
	}
	t.Run("ExportFull", func(t *testing.T) { testExportFull(t, f, tr) })
	t.Run("ExportTrainableOnly", func(t *testing.T) { testExportTrainableOnly(t, f, tr) })
	t.Run("ExportConfig", func(t *testing.T) { testExportConfig(t, tr) })
	t.Run("ExportRoundTrip", func(t *testing.T) { testExportRoundTrip(t, f, tr) })
	t.Run("ExportRefusesCorrupt", func(t *testing.T) { testExportRefusesCorrupt(t, f) })
	t.Run("PromptIsTrainingPrefix", func(t *testing.T) { testPromptIsTrainingPrefix(t, tr, f.manifest.Val) })
	t.Run("PredictMatchesGenerate", func(t *testing.T) { testPredictMatchesGenerate(t, tr, f.manifest) })
	t.Run("EvaluateByKind", func(t *testing.T) { testEvaluateByKind(t, tr, f.manifest) })
	t.Run("EvaluateLRView", func(t *testing.T) { testEvaluateLRView(t, tr, f.manifest) })
}

// testExportFull: the exported file loads as the model, the trained tensors are the checkpoint's bytes
// and every other tensor is the base file's bytes.
func testExportFull(t *testing.T, f trainedFixture, tr *Trained) {
	dir := t.TempDir()
	if err := Export(tr, dir, ExportOptions{}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	if _, err := model.LoadWeights(dir, f.cfg.Model(), tensor.Float32); err != nil {
		t.Errorf("model.LoadWeights(%s): %v", dir, err)
	}
	file, err := safetensors.ReadFile(filepath.Join(dir, ExportModelFile))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := file.Names(), slices.Sorted(maps.Keys(model.Shapes(f.cfg.Model()))); !slices.Equal(got, want) {
		t.Errorf("exported tensors = %v; want the model's %v", got, want)
	}
	ck, err := checkpoints.Load(f.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	trained := 0
	for name, got := range file.Tensors {
		want, from := f.base[name], "base"
		if ck.Weights[name].Data != nil {
			want, from, trained = ck.Weights[name], "checkpoint", trained+1
		}
		if got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: exported %s%v differs from the %s's %s%v", name, got.DType, got.Shape, from, want.DType, want.Shape)
		}
	}
	if trained != len(ck.Weights) || trained == 0 {
		t.Errorf("%d exported tensors come from the checkpoint; want all %d of its tensors", trained, len(ck.Weights))
	}
	if got := file.Metadata["flextrain_step"]; got != "2" {
		t.Errorf("metadata flextrain_step = %q; want \"2\"", got)
	}
	assertOnlyFiles(t, dir, ExportConfigFile, ExportModelFile, "generation_config.json", "tokenizer.json")
}

// testExportTrainableOnly: the file holds exactly the checkpoint's tensors, byte for byte.
func testExportTrainableOnly(t *testing.T, f trainedFixture, tr *Trained) {
	dir := t.TempDir()
	if err := Export(tr, dir, ExportOptions{TrainableOnly: true}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	file, err := safetensors.ReadFile(filepath.Join(dir, ExportTrainableFile))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoints.Load(f.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := file.Names(), slices.Sorted(maps.Keys(ck.Weights)); !slices.Equal(got, want) {
		t.Fatalf("exported tensors = %v; want the checkpoint's %v", got, want)
	}
	for name, got := range file.Tensors {
		if !bytes.Equal(got.Data, ck.Weights[name].Data) {
			t.Errorf("%s: exported bytes differ from the checkpoint's", name)
		}
	}
	assertOnlyFiles(t, dir, ExportConfigFile, ExportTrainableFile)
	var cfg map[string]any
	if err := json.Unmarshal(readAll(t, filepath.Join(dir, ExportConfigFile)), &cfg); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	for key, want := range map[string]any{"flextrain.trainable_only": true, "flextrain.weights_file": ExportTrainableFile,
		"flextrain.tensors": float64(len(ck.Weights)), "flex.n_sa": float64(f.cfg.Flex.NSA), "model_type": "llava"} {
		if got := lookupPath(cfg, key); !jsonEqual(got, want) {
			t.Errorf("trainable-only config.json %s = %v; want %v", key, got, want)
		}
	}
	if err := Export(&Trained{Config: tr.Config, Weights: tr.Weights, Tokenizer: tr.Tokenizer}, t.TempDir(), ExportOptions{TrainableOnly: true}); !errors.Is(err, ErrNothingTrained) {
		t.Errorf("Export of a model without trained tensors: err = %v; want ErrNothingTrained", err)
	}
}

// assertOnlyFiles fails unless dir holds exactly the named files (no temporary file left behind).
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(names)
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %v; want %v", dir, got, names)
	}
}

// testExportConfig: config.json carries the LLaVA fields and the FlexAttention settings of the run.
func testExportConfig(t *testing.T, tr *Trained) {
	dir := t.TempDir()
	if err := Export(tr, dir, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ExportConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	c := tr.Config
	S, Z := float64(c.Arch.Vision.ImageSize), float64(c.Flex.Zoom)
	for _, tt := range []struct {
		path string
		want any
	}{
		{"architectures", []any{"LlavaLlamaForCausalLM"}}, {"model_type", "llava"},
		{"hidden_size", float64(c.Arch.Text.HiddenSize)}, {"intermediate_size", float64(c.Arch.Text.IntermediateSize)},
		{"num_hidden_layers", float64(c.Arch.Text.NumLayers)}, {"num_attention_heads", float64(c.Arch.Text.NumHeads)},
		{"vocab_size", float64(c.Arch.Text.VocabSize)}, {"rms_norm_eps", c.Arch.Text.RMSNormEps}, {"rope_theta", c.Arch.Text.RopeTheta},
		{"mm_projector_type", "mlp2x_gelu"}, {"mm_vision_select_layer", float64(c.Arch.Vision.SelectLayer)},
		{"image_aspect_ratio", "pad"}, {"vision_config.hidden_size", float64(c.Arch.Vision.HiddenSize)},
		{"vision_config.image_size", S}, {"vision_config.patch_size", float64(c.Arch.Vision.PatchSize)},
		{"flex.n_sa", float64(c.Flex.NSA)}, {"flex.zoom", Z}, {"flex.select_grid", float64(c.Flex.SelectGrid)},
		{"flex.lowres_size", S}, {"flex.highres_size", Z * S}, {"flex.threshold", c.Flex.Threshold},
		{"flex.strategy", c.Flex.Strategy}, {"extra.zoom_ratio", Z}, {"extra.highres_size", Z * S},
		{"flextrain.step", float64(tr.Step)}, {"flextrain.format", "llava"}, {"flextrain.dtype", "float32"},
		{"mm_vision_tower", "openai/clip-vit-large-patch14-336"}, {"bos_token_id", float64(tr.Tokenizer.BOS())},
	} {
		if v := lookupPath(got, tt.path); !jsonEqual(v, tt.want) {
			t.Errorf("config.json %s = %v; want %v", tt.path, v, tt.want)
		}
	}
}

// lookupPath follows a dotted path into decoded JSON.
func lookupPath(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// testExportRefusesCorrupt: a flipped byte in the checkpoint's weights stops the load that precedes an
// export, with ErrCorrupt and the file's name.
func testExportRefusesCorrupt(t *testing.T, f trainedFixture) {
	dir := filepath.Join(t.TempDir(), "checkpoint-2")
	if err := os.CopyFS(dir, os.DirFS(f.ckpt)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "weights.st.zst")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir, Options{})
	if !errors.Is(err, checkpoints.ErrCorrupt) || !strings.Contains(err.Error(), "weights.st.zst") {
		t.Errorf("Load of a corrupt checkpoint: err = %v; want ErrCorrupt naming weights.st.zst", err)
	}
}

// valQueries are the validation records as a user asks them: image file and question.
func valQueries(t *testing.T, m synth.Manifest) []Query {
	t.Helper()
	var qs []Query
	for _, r := range readSynth(t, m.Val) {
		q := Query{Question: userQuestion(r)}
		if r.Image != "" {
			var err error
			if q.Image, err = data.LoadImage(filepath.Join(m.ImageFolder, r.Image)); err != nil {
				t.Fatal(err)
			}
		}
		qs = append(qs, q)
	}
	return qs
}

// testExportRoundTrip: a float32 export in either format loads back as the same model, every weight's bits
// (llava-hf's vocabulary padded with zero rows that decoding never chooses), the same FlexAttention
// settings and the same answer to every validation question; a float16 export holds each weight rounded
// to half precision.
func testExportRoundTrip(t *testing.T, f trainedFixture, tr *Trained) {
	queries := valQueries(t, f.manifest)
	want, err := tr.Predict(queries, 8)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		format pretrained.Format
		dtype  string
		tol    float64 // relative error of a weight read back
	}{
		{pretrained.FormatLLaVA, "float32", 0},
		{pretrained.FormatLLaVAHF, "float32", 0},
		{pretrained.FormatLLaVA, "float16", 1.0 / 2048},
	} {
		name := string(tt.format) + "/" + tt.dtype
		dir := t.TempDir()
		if err := Export(tr, dir, ExportOptions{Format: tt.format, DType: tt.dtype}); err != nil {
			t.Fatalf("%s: Export: %v", name, err)
		}
		back, err := Load(dir, Options{})
		if err != nil {
			t.Fatalf("%s: Load(export): %v", name, err)
		}
		compareWeights(t, name, tr.Weights, back.Weights, tt.tol)
		if back.Config.Flex.FlexConfig != tr.Config.Flex.FlexConfig {
			t.Errorf("%s: flex settings %+v; want the run's %+v", name, back.Config.Flex.FlexConfig, tr.Config.Flex.FlexConfig)
		}
		if tt.tol != 0 {
			continue
		}
		got, err := back.Predict(queries, 8)
		if err != nil {
			t.Fatalf("%s: Predict: %v", name, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: the export answers %q; the checkpoint %q", name, got, want)
		}
	}
}

// compareWeights checks every weight of want against got within relative error tol (0: the same bits);
// got's rows past want's (a padded vocabulary) must be zero.
func compareWeights(t *testing.T, name string, want, got *model.Weights, tol float64) {
	t.Helper()
	for _, n := range want.Names() {
		w, g := floats(t, want, n), floats(t, got, n)
		if len(g) < len(w) {
			t.Errorf("%s: %s holds %d values; want %d", name, n, len(g), len(w))
			continue
		}
		for i, v := range w {
			if d := math.Abs(float64(g[i] - v)); (tol == 0 && math.Float32bits(g[i]) != math.Float32bits(v)) || d > tol*math.Abs(float64(v))+1e-7 {
				t.Errorf("%s: %s[%d] = %g; want %g", name, n, i, g[i], v)
				break
			}
		}
		if slices.ContainsFunc(g[len(w):], func(v float32) bool { return v != 0 }) {
			t.Errorf("%s: %s's rows past the model's vocabulary are not zero", name, n)
		}
	}
}

// floats are the values of the weight called n, widened if the store keeps it in 16 bits.
func floats(t *testing.T, w *model.Weights, n string) []float32 {
	t.Helper()
	v, err := w.Tensor(n).Float32s()
	if err != nil {
		t.Fatalf("%s: %v", n, err)
	}
	return v
}

func readAll(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
