package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/flextrain/flextrain/pretrained"
)

// fromFolder takes the model's shape from model_name_or_path when it is a published or exported folder
// (pretrained.IsFolder): its config.json, and its tower's. A `model:` block is for models started from
// scratch: left out, the folder's shape is used; given, each of its keys must agree with the folder, and a
// key that contradicts it is refused. tokenizer_path, when empty, becomes the folder when it holds a
// tokenizer.
func (c *Config) fromFolder() error {
	if c.ModelNameOrPath == "" || !pretrained.IsFolder(c.ModelNameOrPath) {
		return nil
	}
	m, err := pretrained.ReadModel(c.ModelNameOrPath, pretrained.Options{VisionTower: c.LLaVA.VisionTower})
	if err != nil {
		return fmt.Errorf("model_name_or_path: %w", err)
	}
	folder := Arch{Vision: m.Vision, Text: m.Text}
	if c.Arch != Defaults().Arch {
		if diff := archDiff(c.Arch, folder); len(diff) > 0 {
			return fmt.Errorf("%w: model: %v contradict %s's config.json; leave the model: block out, the folder gives the shape", ErrBadValue, diff, c.ModelNameOrPath)
		}
	}
	c.Arch = folder
	if c.TokenizerPath == "" && pretrained.HasTokenizer(c.ModelNameOrPath) {
		c.TokenizerPath = c.ModelNameOrPath
	}
	return nil
}

// archDiff lists the keys of the `model:` block whose values differ between a and b ("text.hidden_size:
// 4096 ≠ 5120").
func archDiff(a, b Arch) []string {
	var out []string
	fa, fb := flattenValue(reflect.ValueOf(a)), flattenValue(reflect.ValueOf(b))
	for _, k := range slices.Sorted(maps.Keys(fa)) {
		if fa[k] != fb[k] {
			out = append(out, fmt.Sprintf("%s: %s in the YAML, %s in the folder", k, fa[k], fb[k]))
		}
	}
	return out
}
