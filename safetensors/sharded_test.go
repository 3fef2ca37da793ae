package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeShards writes two shards and an index into a "ckpt" folder of a temp dir, plus a foreign file beside
// that folder, and returns the index path.
func writeShards(t testing.TB, index string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "ckpt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a := &File{Metadata: map[string]string{"format": "pt"}, Tensors: map[string]Tensor{
		"a.weight": FromFloat32([]int{2}, []float32{1, 2}), "a.bias": FromFloat32([]int{1}, []float32{3})}}
	b := &File{Tensors: map[string]Tensor{"b.weight": FromFloat64([]int{1, 1}, []float64{4})}}
	for path, f := range map[string]*File{
		filepath.Join(dir, "model-00001-of-00002.safetensors"): a,
		filepath.Join(dir, "model-00002-of-00002.safetensors"): b,
		filepath.Join(root, "x.safetensors"):                   b,
	} {
		if err := WriteFile(path, f); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink(filepath.Join(root, "x.safetensors"), filepath.Join(dir, "link.safetensors"))
	path := filepath.Join(dir, IndexName)
	if err := os.WriteFile(path, []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodMap = `"a.weight": "model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors",
	"b.weight": "model-00002-of-00002.safetensors"`

func TestReadSharded(t *testing.T) {
	path := writeShards(t, `{"metadata": {"total_size": 20}, "weight_map": {`+goodMap+`}}`)
	f, err := ReadSharded(path)
	if err != nil {
		t.Fatalf("ReadSharded: %v", err)
	}
	if want := []string{"a.bias", "a.weight", "b.weight"}; !reflect.DeepEqual(f.Names(), want) {
		t.Errorf("names: got %v; want %v", f.Names(), want)
	}
	if got, _ := f.Tensors["b.weight"].Float64s(); !reflect.DeepEqual(got, []float64{4}) {
		t.Errorf("b.weight: got %v; want [4]", got)
	}
	if want := map[string]string{"total_size": "20", "format": "pt"}; !reflect.DeepEqual(f.Metadata, want) {
		t.Errorf("metadata: got %v; want %v", f.Metadata, want)
	}
}

func TestReadShardedRejects(t *testing.T) {
	shard1 := `"model-00001-of-00002.safetensors"`
	cases := []struct {
		name  string
		index string
		want  []string
	}{
		{"parent path", `{"weight_map": {"b.weight": "../x.safetensors"}}`, []string{"../x.safetensors", "leaves"}},
		{"absolute path", `{"weight_map": {"b.weight": "/etc/passwd"}}`, []string{"/etc/passwd", "leaves"}},
		{"symlink out", `{"weight_map": {"b.weight": "link.safetensors"}}`, []string{"link.safetensors", "escapes"}},
		{"missing from shard", `{"weight_map": {` + goodMap + `, "c.weight": ` + shard1 + `}}`, []string{`"c.weight"`, "lacks it"}},
		{"not in map", `{"weight_map": {"a.weight": ` + shard1 + `}}`, []string{`"a.bias"`, "not in the weight_map"}},
		{"wrong shard", `{"weight_map": {"a.weight": ` + shard1 + `, "a.bias": "model-00002-of-00002.safetensors"}}`,
			[]string{`"a.bias"`}},
		{"duplicate name", `{"weight_map": {` + goodMap + `, "a.bias": ` + shard1 + `}}`, []string{`"a.bias"`, "twice"}},
		{"unknown key", `{"weight_map": {` + goodMap + `}, "extra": 1}`, []string{`"extra"`}},
		{"empty map", `{"metadata": {}, "weight_map": {}}`, []string{"empty"}},
		{"shard not string", `{"weight_map": {"a.weight": 3}}`, []string{`"a.weight"`, "not a string"}},
		{"missing shard file", `{"weight_map": {"a.weight": "nope.safetensors"}}`, []string{"nope.safetensors"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeShards(t, c.index)
			f, err := ReadSharded(path)
			if err == nil {
				t.Fatalf("got %v and no error; want an error", f.Names())
			}
			for _, w := range append(c.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q; want it to mention %s", err, w)
				}
			}
		})
	}
	if _, err := ReadSharded(writeShards(t, `{"weight_map": {"b.weight": "../x.safetensors"}}`)); !errors.Is(err, ErrFormat) {
		t.Errorf("parent path: got %v; want ErrFormat", err)
	}
}
