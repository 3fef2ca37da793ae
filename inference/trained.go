// Package inference is a trained model put to use: a checkpoint loaded with its base weights and tokenizer
// (Load), answers to questions about images (Predict), evaluation of a data file (EvaluateFile), the
// exported weights for other tools (Export), the HR cells FlexAttention selects (Selections), and the
// check of a checkpoint's tensors against its model (CheckCheckpoint).
package inference

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/pretrained"

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
	Folder    *pretrained.Folder            // the published or exported folder it was read from; nil for a checkpoint
}

// Options are Load's choices besides the path.
type Options struct {
	VisionTower string // a CLIP folder for a LLaVA folder without its tower (pretrained.Options)
}

// Load reads a model: a checkpoint directory, verified, rebuilt in float32 (or the configuration's dtype)
// from its base weights (model_name_or_path, or the seeded initialisation the run started from) overlaid
// with its trained tensors; or a published or exported folder (LoadFolder).
func Load(path string, opts Options) (*Trained, error) {
	if pretrained.IsFolder(path) {
		return LoadFolder(path, opts)
	}
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
	if tr.Weights, err = baseWeights(cfg, opts); err != nil {
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
func baseWeights(cfg config.Config, opts Options) (*model.Weights, error) {
	dt := tensor.Float32
	if cfg.DType == "float64" {
		dt = tensor.Float64
	}
	tower := cmp.Or(opts.VisionTower, cfg.LLaVA.VisionTower)
	frozen := func(name string) bool { return !cfg.Trainable(name) } // the checkpoint's trained weights are assigned over the rest
	w, _, err := pretrained.Weights(cfg.ModelNameOrPath, cfg.Model(), dt, uint64(cfg.Seed),
		pretrained.Options{VisionTower: tower, Frozen: frozen, BF16: cfg.LLaVA.BF16}) // as the run held them
	return w, err
}

// LoadFolder reads a published LLaVA folder, or one flextrain exported, in float32. A folder with
// FlexAttention's settings or HR projections (an export of a FlexAttention run, the official FlexAttention
// checkpoint) answers with FlexAttention; a base LLaVA answers as LLaVA-1.5 does, from its LR view
// (flex.view lr: α = 0, no HR token read).
func LoadFolder(dir string, opts Options) (*Trained, error) {
	f, err := pretrained.Open(dir, pretrained.Options{VisionTower: opts.VisionTower})
	if err != nil {
		return nil, fmt.Errorf("inference: load %s: %w", dir, err)
	}
	w, err := model.FromTensorsHalf(f.Config, f.Tensors, func(string) bool { return true }) // nothing trains here
	if err != nil {
		return nil, fmt.Errorf("inference: load %s: %w", dir, err)
	}
	tr := &Trained{Config: folderConfig(f), Weights: w, Folder: f}
	if f.TokenizerDir == "" {
		return nil, fmt.Errorf("inference: load %s: the folder holds no tokenizer.json or tokenizer.model", dir)
	}
	if tr.Tokenizer, err = tokenizer.Load(f.TokenizerDir); err != nil {
		return nil, fmt.Errorf("inference: load %s: %w", dir, err)
	}
	return tr, nil
}

// folderConfig is the configuration that describes a folder's model as a run's would.
func folderConfig(f *pretrained.Folder) config.Config {
	c := config.Defaults()
	c.ModelNameOrPath, c.TokenizerPath, c.LLaVA.VisionTower = f.Dir, f.TokenizerDir, f.VisionDir
	c.Arch, c.Flex.FlexConfig = config.Arch{Vision: f.Config.Vision, Text: f.Config.Text}, f.Config.Flex
	c.ModelMaxLength = f.MaxPositionEmbeddings
	if !f.FlexFromFile && !slices.ContainsFunc(slices.Collect(maps.Keys(f.Tensors)), model.IsHRProjection) {
		c.Flex.View = "lr"
	}
	return c
}

// PredictPlan is config.PredictPlan for the published or exported folder dir (read as LoadFolder reads it,
// its tensors' headers only): a prompt of rows rows (≤ 0: the image's tokens and 64 of text) and newTokens
// generated ones.
func PredictPlan(dir string, opts Options, rows, newTokens int) (config.Plan, error) {
	f, err := pretrained.Open(dir, pretrained.Options{VisionTower: opts.VisionTower})
	if err != nil {
		return config.Plan{}, fmt.Errorf("inference: plan %s: %w", dir, err)
	}
	c := folderConfig(f)
	elems, bytes := model.StoredBytes(f.Config, f.Tensors, func(string) bool { return true })
	if _, n, _, _ := f.Config.Grid(); rows <= 0 {
		rows = n + 64
	}
	return config.PredictPlan(f.Config, elems, bytes, rows, newTokens, c.Flex.View != "lr"), nil
}
