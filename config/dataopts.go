package config

import (
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/tokenizer"
)

// DataOptions are the loader settings with which a run of cfg reads its training split, with tokenizer tok:
// the same paths, sizes, template limits and bad-sample policy, so that `flextrain data check` and
// `flextrain data inspect` see the data exactly as `flextrain fit` will. Logger is left nil.
func DataOptions(cfg Config, tok *tokenizer.Tokenizer) data.Options {
	return data.Options{DataPath: cfg.DataPath, ImageFolder: cfg.ImageFolder, Tokenizer: tok,
		ImageSize: cfg.Arch.Vision.ImageSize, Zoom: cfg.Flex.Zoom, PatchSize: cfg.Arch.Vision.PatchSize,
		ModelMaxLength: cfg.ModelMaxLength, BatchSize: cfg.PerDeviceTrainBatchSize, Seed: uint64(cfg.Seed), Shuffle: true,
		GroupByModalityLength: cfg.GroupByModalityLength, Policy: cfg.BadSamplePolicy, MaxBadFraction: cfg.MaxBadFraction,
		Workers: cfg.DataloaderNumWorkers, ValSize: cfg.ValSize, ImageMaxPixels: int64(cfg.ImageMaxPixels),
		MaxRecordBytes: int64(cfg.MaxRecordBytes)}
}

// EvalDataOptions are the settings of one ordered pass over every record of the data file path, whose
// images lie under imageFolder, as evaluation reads it: cfg's sizes and policy, no shuffling, no split.
func EvalDataOptions(cfg Config, tok *tokenizer.Tokenizer, path, imageFolder string) data.Options {
	o := DataOptions(cfg, tok)
	o.DataPath, o.ImageFolder = path, imageFolder
	o.Shuffle, o.Once, o.GroupByModalityLength, o.ValSize, o.Split = false, true, false, 0, data.SplitAll
	if cfg.LLaVA.PerDeviceEvalBatchSize > 0 {
		o.BatchSize = cfg.LLaVA.PerDeviceEvalBatchSize
	}
	return o
}
