package train

import (
	"fmt"

	"github.com/flextrain/flextrain/config"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// Trained is a model ready for evaluation, inference or export: the configuration it was trained with, its
// weights (the base weights with the checkpoint's trained tensors in place) and its tokenizer.
type Trained struct {
	Config    config.Config
	Weights   *model.Weights
	Tokenizer *tokenizer.Tokenizer
	Step      int
	Trained   map[string]safetensors.Tensor // the checkpoint's tensors, by name
}

// LoadTrained reads a checkpoint directory, verifies it, and rebuilds its model in float32 (or the
// configuration's dtype): base weights from model_name_or_path, or the seeded initialisation the run
// started from, overlaid with the checkpoint's trained tensors.
func LoadTrained(path string) (*Trained, error) {
	ck, err := checkpoints.Load(path)
	if err != nil {
		return nil, fmt.Errorf("train: load %s: %w", path, err)
	}
	cfg, err := config.Parse(ck.Config, path+"/config.yaml")
	if err != nil {
		return nil, fmt.Errorf("train: load %s: %w", path, err)
	}
	tr := &Trained{Config: cfg, Step: ck.Step, Trained: ck.Weights}
	if tr.Tokenizer, err = tokenizer.Load(cfg.TokenizerPath); err != nil {
		return nil, fmt.Errorf("train: load %s: tokenizer_path: %w", path, err)
	}
	if tr.Weights, err = baseWeights(cfg); err != nil {
		return nil, fmt.Errorf("train: load %s: %w", path, err)
	}
	for name, ts := range ck.Weights {
		if err := overlay(tr.Weights, name, ts); err != nil {
			return nil, fmt.Errorf("train: load %s: %w", path, err)
		}
	}
	return tr, nil
}

// baseWeights are the weights a run of cfg starts from.
func baseWeights(cfg config.Config) (*model.Weights, error) {
	dt := dtypeOf[float32]()
	if cfg.DType == "float64" {
		dt = dtypeOf[float64]()
	}
	if cfg.ModelNameOrPath != "" {
		return model.LoadWeights(cfg.ModelNameOrPath, cfg.Model(), dt)
	}
	w := model.InitWeights(cfg.Model(), dt, uint64(cfg.Seed))
	if w == nil {
		return nil, fmt.Errorf("cannot initialise the model of the configuration")
	}
	return w, nil
}

// overlay copies a checkpoint tensor into the weight of the same name.
func overlay(w *model.Weights, name string, ts safetensors.Tensor) error {
	d := w.Get(name)
	if d == nil {
		return fmt.Errorf("%w: the checkpoint has %s, which the model does not", checkpoints.ErrConfigMismatch, name)
	}
	switch dst := d.Data().(type) {
	case []float32:
		return copyTensor(dst, d.Shape(), map[string]safetensors.Tensor{name: ts}, name)
	case []float64:
		return copyTensor(dst, d.Shape(), map[string]safetensors.Tensor{name: ts}, name)
	}
	return fmt.Errorf("weight %s has an unsupported type", name)
}
