package config

import (
	"fmt"
	"path/filepath"

	"github.com/flextrain/flextrain/data/synth"
)

// ResolveData generates (or reuses) the dataset a synth:// data_path names (data/synth; its folder is the
// URI's dir, else output_dir/data) and returns cfg with the data keys on its files: data_path the train
// split, image_folder its images, eval_data_path the val split (unless val_size holds some of the train
// split out, or an eval file is given) and tokenizer_path its tokenizer when none is set. Any other data
// path is returned unchanged. The run's saved config.yaml then names real files, so checkpoints load as is.
func ResolveData(cfg Config) (Config, error) {
	if !synth.IsURI(cfg.DataPath) {
		return cfg, nil
	}
	o, err := synth.ParseURI(cfg.DataPath)
	if err != nil {
		return cfg, fmt.Errorf("config: data_path: %w", err)
	}
	if o.Dir == "" {
		o.Dir = filepath.Join(cfg.OutputDir, "data")
	}
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return cfg, fmt.Errorf("config: data_path: %w", err)
	}
	m, err := synth.Generate(o)
	if err != nil {
		return cfg, fmt.Errorf("config: data_path %s: %w", cfg.DataPath, err)
	}
	cfg.DataPath, cfg.ImageFolder = m.Train, m.ImageFolder
	if cfg.EvalDataPath == "" && cfg.ValSize == 0 {
		cfg.EvalDataPath = m.Val
	}
	if cfg.TokenizerPath == "" {
		cfg.TokenizerPath = m.Tokenizer
	}
	return cfg, nil
}

// EvalAlpha is the blend weight at which a run trained on view is evaluated: 1 for flex (FlexAttention's
// inference mode), 0 for lr (plain attention: exactly the LR view the run trained on, its copied HR
// projections unused). hd-seq, a benchmark view, has no evaluation: decoding reads the LR or flex view only.
func EvalAlpha(view string) (float64, error) {
	switch view {
	case "", "flex":
		return 1, nil
	case "lr":
		return 0, nil
	}
	return 0, fmt.Errorf("config: no evaluation of flex.view %q: decoding reads the flex or lr view", view)
}
