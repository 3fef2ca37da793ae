// Package inference is a trained model put to use: a checkpoint loaded with its base weights and tokenizer
// (Load), answers to questions about images (Predict), evaluation of a data file (EvaluateFile), the
// exported weights for other tools (Export), the HR cells FlexAttention selects (Selections), and the
// check of a checkpoint's tensors against its model (CheckCheckpoint).
package inference

import (
	"fmt"

	"gorgonia.org/tensor"

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

// Load reads a checkpoint directory, verifies it, and rebuilds its model in float32 (or the
// configuration's dtype): base weights from model_name_or_path, or the seeded initialisation the run
// started from, overlaid with the checkpoint's trained tensors.
func Load(path string) (*Trained, error) {
	ck, err := LoadCheckpoint(path)
	if err != nil {
		return nil, fmt.Errorf("inference: load %s: %w", path, err)
	}
	cfg, err := config.Parse(ck.Config, path+"/config.yaml")
	if err != nil {
		return nil, fmt.Errorf("inference: load %s: %w", path, err)
	}
	tr := &Trained{Config: cfg, Step: ck.Step, Trained: ck.Weights}
	if tr.Tokenizer, err = tokenizer.Load(cfg.TokenizerPath); err != nil {
		return nil, fmt.Errorf("inference: load %s: tokenizer_path: %w", path, err)
	}
	if tr.Weights, err = baseWeights(cfg); err != nil {
		return nil, fmt.Errorf("inference: load %s: %w", path, err)
	}
	for name, ts := range ck.Weights {
		if err := tr.Weights.Assign(name, ts); err != nil {
			return nil, fmt.Errorf("inference: load %s: %w: %w", path, checkpoints.ErrConfigMismatch, err)
		}
	}
	return tr, nil
}

// baseWeights are the weights a run of cfg starts from.
func baseWeights(cfg config.Config) (*model.Weights, error) {
	dt := tensor.Float32
	if cfg.DType == "float64" {
		dt = tensor.Float64
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
