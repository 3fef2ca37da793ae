package pretrained

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// The fixtures of scripts/make-llava-fixtures.py.
const (
	fixtures    = "../testdata/llava"
	llavaST     = fixtures + "/llava-v1.5-tiny"     // liuhaotian's layout, safetensors shards
	llavaBin    = fixtures + "/llava-v1.5-tiny-bin" // the same weights as PyTorch shards
	llavaHF     = fixtures + "/llava-1.5-tiny-hf"   // llava-hf's layout
	clipFixture = fixtures + "/clip-vit-tiny"       // CLIPModel
)

// fixtureConfig is the model the fixtures hold (before llava-hf pads the vocabulary to 192), with the neutral
// FlexAttention settings Open gives a base LLaVA.
var fixtureConfig = model.Config{
	Vision: model.VisionConfig{ImageSize: 32, PatchSize: 8, HiddenSize: 12, IntermediateSize: 24, NumLayers: 2, NumHeads: 2,
		LayerNormEps: 1e-5, SelectLayer: -2},
	Text: model.TextConfig{VocabSize: 144, HiddenSize: 16, IntermediateSize: 24, NumLayers: 3, NumHeads: 2, RMSNormEps: 1e-5,
		RopeTheta: 10000},
	Flex: model.FlexConfig{NSA: 2, Zoom: 3, SelectGrid: 9, Threshold: 48, Strategy: "attention"},
}

// open opens a folder, failing the test on an error.
func open(t *testing.T, dir string, opts Options) *Folder {
	t.Helper()
	f, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return f
}

// copyFolder copies the regular files of src into a new folder named like src under a temp dir (so that
// the sibling CLIP folder is absent unless the test copies it too), leaving out the names in skip.
func copyFolder(t *testing.T, src string, skip ...string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	copyInto(t, src, dst, skip...)
	return dst
}

// copyInto copies the regular files of src into dst.
func copyInto(t *testing.T, src, dst string, skip ...string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if slices.Contains(skip, e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readJSON decodes a JSON file into a map.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// patchConfig sets (value non-nil) or deletes (value nil) the dotted key of dir's config.json.
func patchConfig(t *testing.T, dir, key string, value any) {
	t.Helper()
	path := filepath.Join(dir, ConfigFile)
	m := readJSON(t, path)
	obj, parts := m, strings.Split(key, ".")
	for _, k := range parts[:len(parts)-1] {
		obj = obj[k].(map[string]any)
	}
	if value == nil {
		delete(obj, parts[len(parts)-1])
	} else {
		obj[parts[len(parts)-1]] = value
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lookup follows a dotted path into decoded JSON.
func lookup(m map[string]any, key string) any {
	var v any = m
	for _, k := range strings.Split(key, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[k]
	}
	return v
}

// sameTensor reports whether two tensors have the same dtype, shape and bytes.
func sameTensor(a, b safetensors.Tensor) bool {
	return a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Data, b.Data)
}

// float32s decodes a tensor, failing the test on an error.
func float32s(t *testing.T, x safetensors.Tensor) []float32 {
	t.Helper()
	v, err := x.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// wantError fails unless err is non-nil and holds every one of parts.
func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one holding %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q\nlacks %q", err, p)
		}
	}
}
