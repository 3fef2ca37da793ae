package train

import (
	"errors"
	"fmt"
	"slices"
	"strings"

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
	cfg, err := ParseConfig(ck.Config, "config.yaml")
	if err != nil {
		return fmt.Errorf("train: check checkpoint %d: %w", ck.Step, err)
	}
	shapes, dtype := model.Shapes(cfg.Model()), safetensors.DType("F32")
	if cfg.DType == "float64" {
		dtype = "F64"
	}
	var errs []error
	for _, name := range sortedNames(ck.Weights) {
		errs = append(errs, checkTensor(ck.Weights[name], name, shapes[name], dtype))
	}
	errs = append(errs, checkMoments(ck, dtype)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("train: check checkpoint %d: %w:\n%w", ck.Step, checkpoints.ErrConfigMismatch, err)
	}
	return nil
}

// checkTensor reports a tensor whose shape or dtype is not the wanted one; a nil want means the model has
// no tensor of that name.
func checkTensor(ts safetensors.Tensor, name string, want []int, dtype safetensors.DType) error {
	switch {
	case want == nil:
		return fmt.Errorf("%s: the model has no such tensor", name)
	case !slices.Equal(ts.Shape, want):
		return fmt.Errorf("%s: shape %v, the model's is %v", name, ts.Shape, want)
	case ts.DType != dtype:
		return fmt.Errorf("%s: dtype %s, the run's is %s", name, ts.DType, dtype)
	}
	return nil
}

// checkMoments checks the optimizer tensors: "m.<weight>" and "v.<weight>" of the stored weights.
func checkMoments(ck *checkpoints.Checkpoint, dtype safetensors.DType) []error {
	var errs []error
	for _, name := range sortedNames(ck.Optimizer) {
		w, ok := strings.CutPrefix(name, "m.")
		if !ok {
			w, ok = strings.CutPrefix(name, "v.")
		}
		ts, stored := ck.Weights[w]
		if !ok || !stored {
			errs = append(errs, fmt.Errorf("%s: not the AdamW state of a stored weight", name))
			continue
		}
		errs = append(errs, checkTensor(ck.Optimizer[name], name, ts.Shape, dtype))
	}
	if len(ck.Optimizer) == 0 {
		return errs
	}
	for _, w := range sortedNames(ck.Weights) {
		for _, m := range []string{"m." + w, "v." + w} {
			if _, ok := ck.Optimizer[m]; !ok {
				errs = append(errs, fmt.Errorf("%s: missing, while other weights have their AdamW state", m))
			}
		}
	}
	return errs
}
