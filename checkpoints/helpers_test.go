package checkpoints

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/flextrain/flextrain/safetensors"
)

// tinyCheckpoint returns a small checkpoint whose values depend on step, with several dtypes and a
// scalar, the way the trainer fills one.
func tinyCheckpoint(step int) *Checkpoint {
	rng := rand.New(rand.NewPCG(uint64(step), 7))
	return &Checkpoint{
		Step: step,
		Weights: map[string]safetensors.Tensor{
			"flex.0.q_proj.weight": randomF32(rng, 4, 8),
			"flex.0.alpha":         randomF32(rng),
			"flex.1.q_proj.weight": randomF32(rng, 4, 8),
			"flex.layer_ids":       safetensors.FromInt64([]int{2}, []int64{3, 7}),
		},
		Optimizer: map[string]safetensors.Tensor{
			"m.flex.0.q_proj.weight": randomF32(rng, 4, 8),
			"v.flex.0.q_proj.weight": randomF32(rng, 4, 8),
			"m.flex.0.alpha":         randomF32(rng),
		},
		State:  json.RawMessage(fmt.Sprintf(`{"step":%d,"epoch":0,"cursor":%d,"rng":[1,2,3]}`, step, 3*step)),
		Config: []byte("model:\n  name: tiny\nseed: 1\n"),
	}
}

// randomF32 returns a float32 tensor of the given shape with standard normal values.
func randomF32(rng *rand.Rand, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return safetensors.FromFloat32(shape, v)
}

// sameCheckpoint reports the first difference between two checkpoints, comparing tensor bytes.
func sameCheckpoint(got, want *Checkpoint) error {
	if got.Step != want.Step {
		return fmt.Errorf("step: got %d; want %d", got.Step, want.Step)
	}
	if err := sameTensors("weights", got.Weights, want.Weights); err != nil {
		return err
	}
	if err := sameTensors("optimizer", got.Optimizer, want.Optimizer); err != nil {
		return err
	}
	if !bytes.Equal(got.State, want.State) {
		return fmt.Errorf("state: got %q; want %q", got.State, want.State)
	}
	if !bytes.Equal(got.Config, want.Config) {
		return fmt.Errorf("config: got %q; want %q", got.Config, want.Config)
	}
	return nil
}

// sameTensors reports the first difference between two tensor maps, byte for byte.
func sameTensors(group string, got, want map[string]safetensors.Tensor) error {
	if len(got) != len(want) {
		return fmt.Errorf("%s: got %d tensors; want %d", group, len(got), len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			return fmt.Errorf("%s: tensor %q missing", group, name)
		case g.DType != w.DType || !slices.Equal(g.Shape, w.Shape):
			return fmt.Errorf("%s %q: got %s%v; want %s%v", group, name, g.DType, g.Shape, w.DType, w.Shape)
		case !bytes.Equal(g.Data, w.Data):
			return fmt.Errorf("%s %q: data differs", group, name)
		}
	}
	return nil
}

// mustSave saves the tiny checkpoint of step into dir with the real file system.
func mustSave(t testing.TB, dir string, step int) string {
	t.Helper()
	p, err := Save(dir, tinyCheckpoint(step))
	if err != nil {
		t.Fatalf("Save step %d: %v", step, err)
	}
	return p
}

// dirNames lists the names in dir, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// reseal rewrites the MANIFEST of the checkpoint directory dir so that it lists the files as they are
// now: the way to build a crafted checkpoint whose checksums agree, to test the checks behind them.
func reseal(t testing.TB, dir string, step int) {
	t.Helper()
	var listed []listedFile
	for _, name := range payloadFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, describe(name, b))
	}
	writeBytes(t, filepath.Join(dir, manifestFile), encodeManifest(step, listed))
}

// writeBytes replaces a file's content.
func writeBytes(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readBytes returns a file's content.
func readBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// steps returns the steps of entries.
func steps(entries []Entry) []int {
	out := []int{}
	for _, e := range entries {
		out = append(out, e.Step)
	}
	return out
}
