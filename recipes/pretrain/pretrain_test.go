package pretrain

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/model"
)

// TestPretrainVision trains the tiny model's tower on a generated set's tags: colour, which the LR view shows
// plainly, must be learnt above chance (1 in 10) by both poolings' heads, and the written weights must hold
// the trained tower and, everywhere else, the seeded initialisation.
func TestPretrainVision(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyConfig(t, "data_path=synth://n=192,val=0,test=0,hr=96,clutter=0,others=0,small=0,text=0,dir="+filepath.Join(dir, "data"),
		"tokenizer_path=", "eval_data_path=", "max_steps=150", "per_device_train_batch_size=16", "learning_rate=3e-3",
		"logging_steps=20", "frozen=[]", "trainable=[\"model.vision_tower.*\"]")
	var out bytes.Buffer
	s, err := Run(context.Background(), cfg, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", s)
	if s.Steps != 150 || s.Skipped != 0 || !strings.Contains(out.String(), "step 150/150") {
		t.Errorf("summary %+v; want 150 steps, no sample skipped, a log line at step 150", s)
	}
	// The maximum is learnt first; the mean, which must spread the colour over all 16 tokens, follows.
	if s.MaxAccuracy["color"] < 0.5 || s.Accuracy["color"] < 0.2 {
		t.Errorf("colour accuracy %.3f max-pooled, %.3f mean-pooled after 150 steps; want ≥ 0.5 and ≥ 0.2 (chance 0.1)",
			s.MaxAccuracy["color"], s.Accuracy["color"])
	}
	for _, k := range []string{"object", "text"} {
		if _, ok := s.Accuracy[k]; !ok {
			t.Errorf("no accuracy for tag key %q", k)
		}
	}
	w, err := model.LoadWeights(s.Model, cfg.Model(), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	init := model.InitWeights(cfg.Model(), tensor.Float32, uint64(cfg.Seed))
	for _, name := range []string{model.VisionPrefix + "embeddings.patch_embedding.weight", "model.layers.0.mlp.up_proj.weight"} {
		same := bytes.Equal(w.Tensors()[name].Data, init.Tensors()[name].Data)
		if trained := strings.HasPrefix(name, model.VisionPrefix); trained == same {
			t.Errorf("%s: equal to its initialisation %v; want %v", name, same, !trained)
		}
	}
}

func TestPretrainVisionErrors(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=2", "trainable=[\"model.vision_tower.*\"]", "frozen=[]")
	if _, err := Run(context.Background(), cfg, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "tags") {
		t.Errorf("data without tags: %v; want an error saying so", err)
	}
	cfg = tinyConfig(t, "max_steps=2", "data_path=synth://n=8,val=0,test=0,hr=96,dir="+t.TempDir(), "tokenizer_path=")
	if _, err := Run(context.Background(), cfg, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "vision tower") {
		t.Errorf("a frozen tower: %v; want an error naming the tower", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg = tinyConfig(t, "max_steps=2", "data_path=synth://n=8,val=0,test=0,hr=96,dir="+t.TempDir(), "tokenizer_path=",
		"trainable=[\"model.vision_tower.*\"]", "frozen=[]")
	if _, err := Run(ctx, cfg, &bytes.Buffer{}); !errors.Is(err, ErrInterrupted) {
		t.Errorf("cancelled: %v; want ErrInterrupted", err)
	}
}

// tinyConfig is configs/tiny.yaml pointed at the repository's testdata/tiny, with a fresh temporary
// output_dir and then the overrides.
func tinyConfig(t *testing.T, overrides ...string) config.Config {
	t.Helper()
	base := []string{"output_dir=" + t.TempDir(), "tokenizer_path=../../testdata/tiny/tokenizer.json",
		"data_path=../../testdata/tiny/train.json", "image_folder=../../testdata/tiny/images", "eval_data_path=", "eval_steps=0"}
	cfg, err := config.Load("../../configs/tiny.yaml", append(base, overrides...))
	if err != nil {
		t.Fatalf("config.Load(configs/tiny.yaml): %v", err)
	}
	return cfg
}
