package pretrained

import (
	"fmt"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model"
)

// Weights are the base weights of a run of the model cfg: a published or exported folder (IsFolder) read by
// Open, its tensors given to model.FromTensors (which widens float16 and bfloat16 to dt and derives missing
// k/v_proj_hd); else model.LoadOrInit's (a flextrain weights file or folder, or the seeded initialisation
// when path is empty). The tensors the folder holds but the model does not use are returned for the caller
// to log once.
func Weights(path string, cfg model.Config, dt tensor.Dtype, seed uint64, opts Options) (*model.Weights, []Ignored, error) {
	if path == "" || !IsFolder(path) {
		w, err := model.LoadOrInit(path, cfg, dt, seed)
		return w, nil, err
	}
	f, err := Open(path, opts)
	if err != nil {
		return nil, nil, err
	}
	w, err := model.FromTensors(cfg, dt, f.Tensors)
	if err != nil {
		return nil, nil, fmt.Errorf("pretrained: %s: %w", path, err)
	}
	return w, f.Ignored, nil
}
