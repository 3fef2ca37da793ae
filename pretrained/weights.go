package pretrained

import (
	"fmt"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// Weights are the base weights of a run of the model cfg: a published or exported folder (IsFolder) read by
// Open, its tensors given to model.FromTensors (which widens float16 and bfloat16 to dt and derives missing
// k/v_proj_hd), or to model.FromTensorsHalf when opts.Frozen picks weights and dt is float32; else
// model.LoadOrInit's (a flextrain weights file or folder, or the seeded initialisation when path is empty).
// With opts.BF16 the frozen matrices are then rounded to bfloat16. The tensors the folder holds but the model
// does not use are returned for the caller to log once.
func Weights(path string, cfg model.Config, dt tensor.Dtype, seed uint64, opts Options) (*model.Weights, []Ignored, error) {
	w, ignored, err := baseWeights(path, cfg, dt, seed, opts)
	if err == nil && opts.BF16 {
		if opts.Frozen == nil {
			return nil, nil, fmt.Errorf("pretrained: bf16 without frozen weights to keep so")
		}
		err = w.Narrow(half.BFloat16, opts.Frozen)
	}
	if err != nil {
		return nil, nil, err
	}
	return w, ignored, nil
}

// baseWeights is Weights as stored, before any rounding to bfloat16.
func baseWeights(path string, cfg model.Config, dt tensor.Dtype, seed uint64, opts Options) (*model.Weights, []Ignored, error) {
	if path == "" || !IsFolder(path) {
		w, err := model.LoadOrInit(path, cfg, dt, seed)
		return w, nil, err
	}
	f, err := Open(path, opts)
	if err != nil {
		return nil, nil, err
	}
	w, err := fromTensors(cfg, dt, f.Tensors, opts.Frozen)
	if err != nil {
		return nil, nil, fmt.Errorf("pretrained: %s: %w", path, err)
	}
	return w, f.Ignored, nil
}

// fromTensors builds the store, keeping in 16 bits the frozen weights stored so when the store is float32.
func fromTensors(cfg model.Config, dt tensor.Dtype, ts map[string]safetensors.Tensor, frozen func(string) bool) (*model.Weights, error) {
	if frozen == nil || dt != tensor.Float32 {
		return model.FromTensors(cfg, dt, ts)
	}
	return model.FromTensorsHalf(cfg, ts, frozen)
}
