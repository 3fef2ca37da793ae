package inference

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/flextrain/flextrain/config"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// CheckCheckpoint checks a loaded checkpoint's tensors against the model of its own config.yaml: every
// weight is one the model has, of its shape and of the run's dtype, and every optimizer tensor is the m or
// v of a stored weight, of the same shape and dtype, present for all of them or for none. A checkpoint
// passes its checksums whatever it holds; this is what says it can be trained on, evaluated or exported.
// The error wraps checkpoints.ErrConfigMismatch and names every tensor at fault.
func CheckCheckpoint(ck *checkpoints.Checkpoint) error {
	cfg, err := config.Parse(ck.Config, "config.yaml")
	if err != nil {
		return fmt.Errorf("inference: check checkpoint %d: %w", ck.Step, err)
	}
	dtype := safetensors.DType("F32")
	if cfg.DType == "float64" {
		dtype = "F64"
	}
	errs := []error{model.CheckTensors(cfg.Model(), ck.Weights)}
	for _, name := range slices.Sorted(maps.Keys(ck.Weights)) {
		if ts := ck.Weights[name]; ts.DType != dtype {
			errs = append(errs, fmt.Errorf("%s: dtype %s, the run's is %s", name, ts.DType, dtype))
		}
	}
	errs = append(errs, checkMoments(ck, dtype)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("inference: check checkpoint %d: %w:\n%w", ck.Step, checkpoints.ErrConfigMismatch, err)
	}
	return nil
}

// checkMoment reports an AdamW moment whose shape or dtype differs from its weight's.
func checkMoment(m safetensors.Tensor, name string, shape []int, dtype safetensors.DType) error {
	if !slices.Equal(m.Shape, shape) || m.DType != dtype {
		return fmt.Errorf("%s: %s%v, its weight is %s%v", name, m.DType, m.Shape, dtype, shape)
	}
	return nil
}

// checkMoments checks the optimizer tensors: "m.<weight>" and "v.<weight>" of the stored weights.
func checkMoments(ck *checkpoints.Checkpoint, dtype safetensors.DType) []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(ck.Optimizer)) {
		w, ok := strings.CutPrefix(name, "m.")
		if !ok {
			w, ok = strings.CutPrefix(name, "v.")
		}
		ts, stored := ck.Weights[w]
		if !ok || !stored {
			errs = append(errs, fmt.Errorf("%s: not the AdamW state of a stored weight", name))
			continue
		}
		errs = append(errs, checkMoment(ck.Optimizer[name], name, ts.Shape, dtype))
	}
	if len(ck.Optimizer) == 0 {
		return errs
	}
	for _, w := range slices.Sorted(maps.Keys(ck.Weights)) {
		for _, m := range []string{"m." + w, "v." + w} {
			if _, ok := ck.Optimizer[m]; !ok {
				errs = append(errs, fmt.Errorf("%s: missing, while other weights have their AdamW state", m))
			}
		}
	}
	return errs
}

// Limits are the most bytes the tensor files of the checkpoint at path may decompress to, from the model of
// its own config.yaml (read and verified alone): its trainable weights at the run's dtype and their AdamW
// moments. A checkpoint claiming more is refused before it costs memory.
func Limits(path string) (checkpoints.Limits, error) {
	b, err := checkpoints.Store{}.ReadConfig(path)
	if err != nil {
		return checkpoints.Limits{}, err
	}
	cfg, err := config.Parse(b, path+"/config.yaml")
	if err != nil {
		return checkpoints.Limits{}, fmt.Errorf("inference: %w", err)
	}
	weights, moments := map[string][]int{}, map[string][]int{}
	for name, shape := range model.Shapes(cfg.Model()) {
		if cfg.Trainable(name) {
			weights[name], moments["m."+name], moments["v."+name] = shape, shape, shape
		}
	}
	elem := 4
	if cfg.DType == "float64" {
		elem = 8
	}
	return checkpoints.Limits{Weights: checkpoints.PayloadBound(weights, elem), Optimizer: checkpoints.PayloadBound(moments, elem)}, nil
}

// LoadCheckpoint loads the checkpoint at path within its Limits.
func LoadCheckpoint(path string) (*checkpoints.Checkpoint, error) {
	lim, err := Limits(path)
	if err != nil {
		return nil, err
	}
	return checkpoints.Store{Limits: lim}.Load(path)
}
