package config

import (
	"os"
	"path/filepath"

	"github.com/flextrain/flextrain/data/synth"
)

// pathKeys are the keys that name files or folders, each with its field.
func (c *Config) pathKeys() map[string]*string {
	return map[string]*string{"output_dir": &c.OutputDir, "model_name_or_path": &c.ModelNameOrPath,
		"tokenizer_path": &c.TokenizerPath, "data_path": &c.DataPath, "image_folder": &c.ImageFolder,
		"eval_data_path": &c.EvalDataPath, "vision_tower": &c.LLaVA.VisionTower}
}

// AbsPaths makes every path of the configuration absolute, relative to the working directory, so that the
// config.yaml a run saves (and every checkpoint's copy of it) names its files from any directory: predict
// or eval started elsewhere finds the tokenizer and the base weights. A synth:// data_path is a URI, not a
// path, and stays as it is (its folder is resolved when the data is generated).
func (c *Config) AbsPaths() error {
	for _, p := range c.pathKeys() {
		if *p == "" || filepath.IsAbs(*p) || p == &c.DataPath && synth.IsURI(*p) {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

// SamePaths copies into c the paths of prev that name the same files as c's (os.SameFile), so that Diff
// does not see a data file reached by another path (a relative path of a checkpoint of an earlier build, a
// symbolic link) as a changed run.
func (c *Config) SamePaths(prev Config) {
	mine, theirs := c.pathKeys(), prev.pathKeys()
	for k, p := range mine {
		if *p == *theirs[k] || *p == "" || *theirs[k] == "" {
			continue
		}
		a, errA := os.Stat(*p)
		b, errB := os.Stat(*theirs[k])
		if errA == nil && errB == nil && os.SameFile(a, b) {
			*p = *theirs[k]
		}
	}
}
