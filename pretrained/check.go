package pretrained

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/flextrain/flextrain/model"
)

// checkTensors compares the tensors of s, read from where, with the weights of a model (their shapes,
// model.Shapes; nSA for its hints), which cfgFiles describe: every weight present (an absent k/v_proj_hd is no problem: model.FromTensors derives it from
// k/v_proj), none the model lacks, each one floating-point and of the shape the configuration gives. Each
// problem names the tensor as stored, the file it came from and, for a shape, both shapes. Problems are
// reported together, sorted by name.
func checkTensors(shapes map[string][]int, nSA int, s sorted, where, cfgFiles string) error {
	var errs []error
	for _, name := range sortedKeys(shapes) {
		if _, ok := s.tensors[name]; !ok && !model.IsHRProjection(name) {
			errs = append(errs, fmt.Errorf("pretrained: %s: tensor %s is missing (%s gives it shape %v)", where, name, cfgFiles, shapes[name]))
		}
	}
	for _, name := range sortedKeys(s.tensors) {
		if err := checkOne(name, s, shapes, nSA, cfgFiles); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkOne checks one tensor of s against the model's weight of that name.
func checkOne(name string, s sorted, shapes map[string][]int, nSA int, cfgFiles string) error {
	t, o := s.tensors[name], s.origin[name]
	label := fmt.Sprintf("pretrained: %s: tensor %q", o.file, o.stored)
	if o.stored != name {
		label += " (" + name + ")"
	}
	want, ok := shapes[name]
	switch {
	case !ok:
		return fmt.Errorf("%s (%s%v): the model that %s describes has no such weight%s", label, t.DType, t.Shape, cfgFiles, unknownHint(name, nSA))
	case !slices.Equal(t.Shape, want):
		return fmt.Errorf("%s: shape %v, but %s gives %v", label, t.Shape, cfgFiles, want)
	case !t.DType.IsFloat():
		return fmt.Errorf("%s: dtype %s is not a floating-point type", label, t.DType)
	}
	return nil
}

// unknownHint explains two common unknown tensors.
func unknownHint(name string, nSA int) string {
	switch {
	case model.IsHRProjection(name):
		return fmt.Sprintf(": layers before n_sa = %d have no HR projections", nSA)
	case strings.Contains(name, "image_newline"):
		return ": it belongs to LLaVA-NeXT, not LLaVA-1.5"
	}
	return ""
}

// towerShapes are the shapes of the tower's weights alone.
func towerShapes(v model.VisionConfig) map[string][]int {
	out := map[string][]int{}
	for name, shape := range model.Shapes(model.Config{Vision: v}) {
		if strings.HasPrefix(name, model.VisionPrefix) {
			out[name] = shape
		}
	}
	return out
}
