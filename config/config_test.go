package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/model"
)

func loadValid(t *testing.T, overrides ...string) Config {
	t.Helper()
	c, err := Load("testdata/valid.yaml", overrides)
	if err != nil {
		t.Fatalf("Load(valid.yaml): %v", err)
	}
	return c
}

func TestLoadConfigValid(t *testing.T) {
	c := loadValid(t)
	want := model.Config{
		Vision: model.VisionConfig{ImageSize: 32, PatchSize: 8, HiddenSize: 32, IntermediateSize: 64, NumLayers: 2,
			NumHeads: 4, LayerNormEps: 1e-5, SelectLayer: -2},
		Text: model.TextConfig{VocabSize: 96, HiddenSize: 48, IntermediateSize: 128, NumLayers: 4, NumHeads: 4,
			RMSNormEps: 1e-5, RopeTheta: 10000},
		Flex: model.FlexConfig{NSA: 2, Zoom: 3, SelectGrid: 3, Threshold: 48, Strategy: "attention"},
	}
	if got := c.Model(); !reflect.DeepEqual(got, want) {
		t.Errorf("Model() = %+v; want %+v", got, want)
	}
	for _, tt := range []struct {
		key       string
		got, want any
	}{
		{"learning_rate (file)", c.LearningRate, 1e-4},
		{"save_total_limit (file)", c.SaveTotalLimit, 3},
		{"lr_scheduler_type (default)", c.LRSchedulerType, "cosine"},
		{"warmup_ratio (default)", c.WarmupRatio, 0.03},
		{"seed (default)", c.Seed, 3407},
		{"max_grad_norm (default)", c.MaxGradNorm, 1.0},
		{"flex.alpha_warmup_ratio (default)", c.Flex.AlphaWarmupRatio, 0.1},
		{"flex.view (default)", c.Flex.View, "flex"},
		{"flex.view (--set)", loadValid(t, "flex.view=lr").Flex.View, "lr"},
		{"trainable (docs/DESIGN.md §9)", c.TrainablePatterns,
			[]string{"model.layers.2.*", "model.layers.3.*", "model.norm.*", "lm_head.*"}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v; want %v", tt.key, tt.got, tt.want)
		}
	}
}

// TestShippedConfigs loads every configs/*.yaml: each must be valid and begin with the command that runs it.
func TestShippedConfigs(t *testing.T) {
	files, err := filepath.Glob("../configs/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("configs: %v, %v; want at least 3 files", files, err)
	}
	for _, f := range files {
		if _, err := Load(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "# flextrain ") {
			t.Errorf("%s starts with %.30q; want the command that runs it (# flextrain …)", f, b)
		}
	}
}

func TestShippedBenchConfig(t *testing.T) {
	c, err := Load("../configs/bench.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The bench model of the PyTorch reference step (docs/PERFORMANCE.md), written out independently.
	want := model.Config{
		Vision: model.VisionConfig{ImageSize: 64, PatchSize: 8, HiddenSize: 128, IntermediateSize: 512, NumLayers: 4,
			NumHeads: 4, LayerNormEps: 1e-5, SelectLayer: -2},
		Text: model.TextConfig{VocabSize: 1024, HiddenSize: 256, IntermediateSize: 704, NumLayers: 8, NumHeads: 8,
			RMSNormEps: 1e-5, RopeTheta: 10000},
		Flex: model.FlexConfig{NSA: 3, Zoom: 3, SelectGrid: 6, Threshold: 48, Strategy: "attention"},
	}
	if got := c.Model(); !reflect.DeepEqual(got, want) {
		t.Errorf("bench Model() = %+v; want %+v", got, want)
	}
	if c.PerDeviceTrainBatchSize != 8 {
		t.Errorf("bench batch = %d; want 8", c.PerDeviceTrainBatchSize)
	}
}

func TestLoadConfigKeyErrors(t *testing.T) {
	tests := []struct {
		file     string
		sentinel error
		want     []string // each must appear in the message
	}{
		{"unknown_top.yaml", ErrUnknownKey, []string{"unknown_top.yaml:4: learnig_rate"}},
		{"unknown_nested.yaml", ErrUnknownKey, []string{"unknown_nested.yaml:7: flex.thresold", "model.text.hiden_size"}},
		{"bad_type.yaml", ErrBadValue, []string{"bad_type.yaml:4: learning_rate", `"fast"`, "group_by_modality_length",
			"model.text.num_layers: want an integer", "trainable: want a list"}},
		{"bad_shape.yaml", ErrBadValue, []string{"flex: want a map", "seed given twice"}},
	}
	for _, tt := range tests {
		_, err := Load(filepath.Join("testdata", tt.file), nil)
		if !errors.Is(err, tt.sentinel) {
			t.Errorf("%s: err = %v; want %v", tt.file, err, tt.sentinel)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: err = %q; want it to contain %q", tt.file, err, w)
			}
		}
	}
	if _, err := Load("testdata/missing.yaml", nil); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: err = %v; want os.ErrNotExist naming the file", err)
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		set  string
		get  func(Config) any
		want any
	}{
		{"learning_rate=1e-4", func(c Config) any { return c.LearningRate }, 1e-4},
		{"flex.threshold=40", func(c Config) any { return c.Flex.Threshold }, 40.0},
		{"flex.strategy=topk", func(c Config) any { return c.Flex.Strategy }, "topk"},
		{"model.text.num_layers=6", func(c Config) any { return c.Arch.Text.NumLayers }, 6},
		{"model.vision.select_layer=-1", func(c Config) any { return c.Arch.Vision.SelectLayer }, -1},
		{"group_by_modality_length=true", func(c Config) any { return c.GroupByModalityLength }, true},
		{"output_dir=", func(c Config) any { return c.OutputDir }, ""},
		{"data_path=a=b.json", func(c Config) any { return c.DataPath }, "a=b.json"},
		{"trainable=*.k_proj_hd.weight, lm_head.*", func(c Config) any { return c.TrainablePatterns },
			[]string{"*.k_proj_hd.weight", "lm_head.*"}},
		{"frozen=[a.*, b]", func(c Config) any { return c.FrozenPatterns }, []string{"a.*", "b"}},
		{"flex={n_sa: 3, zoom: 2}", func(c Config) any { return [2]int{c.Flex.NSA, c.Flex.Zoom} }, [2]int{3, 2}},
	}
	for _, tt := range tests {
		c := Defaults()
		if err := c.Set(tt.set); err != nil {
			t.Errorf("Set(%q): %v", tt.set, err)
			continue
		}
		if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Set(%q): got %v; want %v", tt.set, got, tt.want)
		}
	}
}

func TestSetErrors(t *testing.T) {
	tests := []struct {
		set      string
		sentinel error
		key      string
	}{
		{"flex.thresold=40", ErrUnknownKey, "flex.thresold"},
		{"learnig_rate=1", ErrUnknownKey, "learnig_rate"},
		{"learning_rate.x=1", ErrUnknownKey, "learning_rate.x"},
		{"learning_rate=fast", ErrBadValue, "learning_rate"},
		{"model.text.num_layers=4.5", ErrBadValue, "model.text.num_layers"},
		{"seed=", ErrBadValue, "seed"},
		{"flex=3", ErrBadValue, "flex"},
		{"flex.n_sa=[1]", ErrBadValue, "flex.n_sa"},
		{"no_equals_sign", ErrBadValue, "no_equals_sign"},
		{"=1", ErrBadValue, "=1"},
	}
	for _, tt := range tests {
		c := Defaults()
		err := c.Set(tt.set)
		if !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("Set(%q) = %v; want %v naming %s", tt.set, err, tt.sentinel, tt.key)
		}
	}
	// Through Load: the override is applied after the file, and its error is returned as is.
	if _, err := Load("testdata/valid.yaml", []string{"flex.threshold=high"}); !errors.Is(err, ErrBadValue) {
		t.Errorf("Load with a bad --set = %v; want ErrBadValue", err)
	}
}

func TestSetOverridesFile(t *testing.T) {
	c := loadValid(t, "learning_rate=3e-4", "flex.n_sa=1")
	if c.LearningRate != 3e-4 || c.Flex.NSA != 1 {
		t.Errorf("lr %g, n_sa %d; want 3e-4, 1", c.LearningRate, c.Flex.NSA)
	}
	// The default trainable set follows the overridden n_sa.
	if want := DefaultTrainable(1, 4); !reflect.DeepEqual(c.TrainablePatterns, want) {
		t.Errorf("trainable = %v; want %v", c.TrainablePatterns, want)
	}
}

func TestParseDevice(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Device
		ok   bool
	}{
		{"cpu", Device{}, true},
		{"cuda", Device{CUDA: true}, true},
		{"cuda:0", Device{CUDA: true}, true},
		{"cuda:3", Device{CUDA: true, Ordinal: 3}, true},
		{"", Device{}, false},
		{"CUDA", Device{}, false},
		{"cuda:", Device{}, false},
		{"cuda:x", Device{}, false},
		{"cuda:-2", Device{}, false},
		{"cuda:1:2", Device{}, false},
	} {
		got, err := ParseDevice(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDevice(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		key    string
	}{
		{"n_sa = num_layers", func(c *Config) { c.Flex.NSA = 4 }, "flex.n_sa"},
		{"n_sa > num_layers", func(c *Config) { c.Flex.NSA = 9 }, "flex.n_sa"},
		{"save_total_limit 1", func(c *Config) { c.SaveTotalLimit = 1 }, "save_total_limit"},
		{"negative lr", func(c *Config) { c.LearningRate = -1e-4 }, "learning_rate"},
		{"zero lr", func(c *Config) { c.LearningRate = 0 }, "learning_rate"},
		{"unknown scheduler", func(c *Config) { c.LRSchedulerType = "polynomial" }, "lr_scheduler_type"},
		{"bad strategy", func(c *Config) { c.Flex.Strategy = "best" }, "flex.strategy"},
		{"topk without ratio", func(c *Config) { c.Flex.Strategy = "topk" }, "flex.ratio"},
		{"beta1 = 1", func(c *Config) { c.AdamBeta1 = 1 }, "adam_beta1"},
		{"eps 0", func(c *Config) { c.AdamEpsilon = 0 }, "adam_epsilon"},
		{"negative weight decay", func(c *Config) { c.WeightDecay = -0.1 }, "weight_decay"},
		{"warmup ratio 2", func(c *Config) { c.WarmupRatio = 2 }, "warmup_ratio"},
		{"alpha warm-up ratio -1", func(c *Config) { c.Flex.AlphaWarmupRatio = -1 }, "flex.alpha_warmup_ratio"},
		{"dtype", func(c *Config) { c.DType = "bfloat16" }, "dtype"},
		{"unknown device", func(c *Config) { c.Device = "gpu" }, "device"},
		{"device ordinal", func(c *Config) { c.Device = "cuda:one" }, "device"},
		{"negative ordinal", func(c *Config) { c.Device = "cuda:-1" }, "device"},
		{"float64 on a GPU", func(c *Config) { c.Device, c.DType = "cuda", "float64" }, "device"},
		{"unknown view", func(c *Config) { c.Flex.View = "hr" }, "flex.view"},
		{"empty view", func(c *Config) { c.Flex.View = "" }, "flex.view"},
		{"evaluation of hd-seq", func(c *Config) { c.Flex.View, c.EvalSteps, c.ValSize = "hd-seq", 10, 0.1 }, "eval_steps"},
		{"batch 0", func(c *Config) { c.PerDeviceTrainBatchSize = 0 }, "per_device_train_batch_size"},
		{"accumulation 0", func(c *Config) { c.GradientAccumulationSteps = 0 }, "gradient_accumulation_steps"},
		{"no epochs, no max_steps", func(c *Config) { c.NumTrainEpochs = 0 }, "num_train_epochs"},
		{"logging_steps 0", func(c *Config) { c.LoggingSteps = 0 }, "logging_steps"},
		{"bad sample policy", func(c *Config) { c.BadSamplePolicy = "ignore" }, "bad_sample_policy"},
		{"bad fraction 2", func(c *Config) { c.MaxBadFraction = 2 }, "max_bad_fraction"},
		{"val_size 1.5", func(c *Config) { c.ValSize = 1.5 }, "val_size"},
		{"val_size and eval_data_path", func(c *Config) { c.ValSize = 0.1; c.EvalDataPath = "e.json" }, "val_size"},
		{"eval without data", func(c *Config) { c.EvalSteps = 10 }, "eval_steps"},
		{"no output_dir", func(c *Config) { c.OutputDir = "" }, "output_dir"},
		{"no data_path", func(c *Config) { c.DataPath = "" }, "data_path"},
		{"malformed pattern", func(c *Config) { c.FrozenPatterns = []string{"model.[layers"} }, "frozen"},
		{"bad model width", func(c *Config) { c.Arch.Text.HiddenSize = 50 }, "text.hidden_size"},
	}
	for _, tt := range tests {
		c := loadValid(t)
		tt.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.key+":") {
			t.Errorf("%s: Validate = %v; want an error naming %s", tt.name, err, tt.key)
		}
	}
	valid := loadValid(t)
	valid.MaxSteps, valid.NumTrainEpochs = 100, 0 // max_steps wins over epochs
	if err := valid.Validate(); err != nil {
		t.Errorf("max_steps without epochs: Validate = %v; want nil", err)
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	c := loadValid(t)
	c.LearningRate, c.SaveTotalLimit, c.DType = -1, 0, "int8"
	err := c.Validate()
	for _, key := range []string{"learning_rate:", "save_total_limit:", "dtype:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate = %v; want it to name %s", err, key)
		}
	}
}

func TestTrainable(t *testing.T) {
	c := loadValid(t) // n_sa 2 of 4 layers
	frozenHD := loadValid(t, "frozen=*.v_proj_hd.weight")
	tests := []struct {
		c    Config
		name string
		want bool
	}{
		{c, "model.layers.2.self_attn.k_proj_hd.weight", true},
		{c, "model.layers.3.mlp.down_proj.weight", true},
		{c, "model.layers.1.self_attn.q_proj.weight", false},
		{c, "model.layers.0.input_layernorm.weight", false},
		{c, "model.norm.weight", true},
		{c, "lm_head.weight", true},
		{c, "model.embed_tokens.weight", false},
		{c, "model.mm_projector.0.weight", false},
		{c, "model.vision_tower.vision_tower.vision_model.pre_layrnorm.weight", false},
		{frozenHD, "model.layers.2.self_attn.v_proj_hd.weight", false}, // frozen wins
		{frozenHD, "model.layers.2.self_attn.k_proj_hd.weight", true},
	}
	for _, tt := range tests {
		if got := tt.c.Trainable(tt.name); got != tt.want {
			t.Errorf("Trainable(%s) = %v; want %v (frozen %v)", tt.name, got, tt.want, tt.c.FrozenPatterns)
		}
	}
	// Layer 2's pattern must not catch layer 20 of a deeper model.
	deep := loadValid(t, "model.text.num_layers=24")
	if !deep.Trainable("model.layers.20.mlp.up_proj.weight") || deep.Trainable("model.layers.1.mlp.up_proj.weight") {
		t.Errorf("24 layers, n_sa 2: trainable patterns %v select the wrong layers", deep.TrainablePatterns)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c := loadValid(t, "flex.strategy=topk", "flex.ratio=0.1", "frozen=model.norm.*")
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p, nil)
	if err != nil {
		t.Fatalf("Load(YAML()): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}
	if shape, allowed := Diff(c, back); len(shape)+len(allowed) > 0 {
		t.Errorf("Diff after round trip = %v, %v; want none", shape, allowed)
	}
}

func TestTable(t *testing.T) {
	table := loadValid(t).Table()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	col := -1
	var prev string
	for _, l := range lines {
		key, rest, _ := strings.Cut(l, " ")
		value := strings.TrimLeft(rest, " ")
		if c := len(l) - len(value); col == -1 {
			col = c
		} else if c != col {
			t.Errorf("line %q: value at column %d; want %d", l, c, col)
		}
		if key <= prev {
			t.Errorf("key %s after %s; want sorted keys", key, prev)
		}
		prev = key
	}
	for _, want := range []string{"learning_rate", "flex.threshold", "model.text.hidden_size", "trainable"} {
		if !strings.Contains(table, "\n"+want+" ") {
			t.Errorf("Table lacks %s:\n%s", want, table)
		}
	}
	if !strings.Contains(table, "0.0001\n") {
		t.Errorf("Table does not show learning_rate 1e-4 exactly:\n%s", table)
	}
}

func TestDiff(t *testing.T) {
	tests := []struct {
		set     string
		shape   []string
		allowed []string
	}{
		{"learning_rate=1e-3", nil, []string{"learning_rate"}},
		{"max_steps=500", nil, []string{"max_steps"}},
		{"num_train_epochs=2", nil, []string{"num_train_epochs"}},
		{"save_total_limit=5", nil, []string{"save_total_limit"}},
		{"output_dir=elsewhere", nil, []string{"output_dir"}},
		{"logging_steps=1", nil, []string{"logging_steps"}},
		{"seed=1", []string{"seed"}, nil},
		{"data_path=other.json", []string{"data_path"}, nil},
		{"per_device_train_batch_size=2", []string{"per_device_train_batch_size"}, nil},
		{"gradient_accumulation_steps=4", []string{"gradient_accumulation_steps"}, nil},
		{"group_by_modality_length=true", []string{"group_by_modality_length"}, nil},
		{"val_size=0.2", []string{"val_size"}, nil},
		{"flex.threshold=40", []string{"flex.threshold"}, nil},
		{"model.text.hidden_size=64", []string{"model.text.hidden_size"}, nil},
		{"dtype=float64", []string{"dtype"}, nil},
		{"trainable=lm_head.*", []string{"trainable"}, nil},
	}
	base := loadValid(t)
	for _, tt := range tests {
		shape, allowed := Diff(base, loadValid(t, tt.set))
		if !reflect.DeepEqual(shape, tt.shape) || !reflect.DeepEqual(allowed, tt.allowed) {
			t.Errorf("Diff after %s = %v, %v; want %v, %v", tt.set, shape, allowed, tt.shape, tt.allowed)
		}
	}
	shape, allowed := Diff(base, loadValid(t, "seed=1", "learning_rate=1e-3", "flex.n_sa=3"))
	if want := []string{"flex.n_sa", "seed", "trainable"}; !reflect.DeepEqual(shape, want) || len(allowed) != 1 {
		t.Errorf("Diff of three changes = %v, %v; want %v, [learning_rate]", shape, allowed, want)
	}
}

// FuzzConfigDecode: no YAML input makes the config reader panic or hang, and an accepted one validates or
// returns an error (never both a panic and a result).
func FuzzConfigDecode(f *testing.F) {
	for _, p := range []string{"testdata/valid.yaml", "testdata/bad_type.yaml", "testdata/bad_shape.yaml", "../configs/tiny.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("flex: &a {n_sa: 1}\nmodel: *a\n"))
	f.Add([]byte("--- {}\n--- {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Defaults()
		if err := c.decode(data, "fuzz.yaml"); err != nil {
			return
		}
		c.fillDerived()
		_ = c.Validate()
		_ = c.Table()
	})
}

// TestLoadConfigSpecialFiles: a configuration path that is a FIFO or a link to /dev/zero is refused at
// once, neither waiting for a writer nor reading without end.
func TestLoadConfigSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo, zero := filepath.Join(dir, "fifo.yaml"), filepath.Join(dir, "zero.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fifo, zero} {
		done := make(chan error, 1)
		go func() { _, err := Load(path, nil); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, fileio.ErrNotRegular) || !strings.Contains(err.Error(), path) {
				t.Errorf("Load(%s) = %v; want ErrNotRegular naming the path", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) did not return", path)
		}
	}
}

// TestAbsPaths: a loaded configuration names its files by absolute paths, so that the config.yaml a run saves
// works from any directory; a synth:// URI stays a URI; SamePaths lets a relative spelling of the same file
// compare equal to the absolute one.
func TestAbsPaths(t *testing.T) {
	c := loadValid(t, "data_path=testdata/valid.yaml", "tokenizer_path=../configs/tiny.yaml")
	for _, p := range []string{c.DataPath, c.TokenizerPath, c.OutputDir} {
		if !filepath.IsAbs(p) {
			t.Errorf("path %q is not absolute", p)
		}
	}
	if u := loadValid(t, "data_path=synth://n=4"); u.DataPath != "synth://n=4" {
		t.Errorf("synth URI became %q", u.DataPath)
	}
	prev := c
	prev.DataPath = "testdata/valid.yaml" // as an earlier build saved it
	cur := c
	cur.SamePaths(prev)
	if shape, _ := Diff(prev, cur); len(shape) != 0 {
		t.Errorf("Diff of the same file by two paths: %v; want none", shape)
	}
	other := c
	other.DataPath = "testdata/bad_type.yaml"
	cur = c
	cur.SamePaths(other)
	if shape, _ := Diff(other, cur); len(shape) != 1 || shape[0] != "data_path" {
		t.Errorf("Diff of two files: %v; want [data_path]", shape)
	}
}
