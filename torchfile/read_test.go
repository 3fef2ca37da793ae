package torchfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/flextrain/flextrain/safetensors"
)

// want is one tensor of testdata/expected.json, written by scripts/make-torch-fixtures.py from PyTorch's
// own values.
type want struct {
	DType  safetensors.DType
	Shape  []int
	Values []json.Number
}

// expected returns the expected tensors of each fixture, by file.
func expected(t *testing.T) map[string]map[string]want {
	t.Helper()
	b, err := os.ReadFile("testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]map[string]want
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkTensors compares tensors with their expected dtypes, shapes and values, exactly.
func checkTensors(t *testing.T, got map[string]safetensors.Tensor, wants map[string]want) {
	t.Helper()
	if !slices.Equal(slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(wants))) {
		t.Fatalf("got tensors %v; want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(wants)))
	}
	for name, w := range wants {
		g := got[name]
		if g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || g.Shape == nil {
			t.Errorf("%s: got %s%v; want %s%v", name, g.DType, g.Shape, w.DType, w.Shape)
			continue
		}
		if err := sameValues(g, w.Values); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// sameValues compares a tensor's values with the expected numbers, exactly: floats as float64, integers
// and booleans as int64.
func sameValues(g safetensors.Tensor, want []json.Number) error {
	got, err := decodeValues(g)
	if err != nil {
		return err
	}
	if len(got) != len(want) {
		return fmt.Errorf("got %d values; want %d", len(got), len(want))
	}
	for i, n := range want {
		w, err := parseNumber(n, g.DType.IsFloat())
		if err != nil || got[i] != w {
			return fmt.Errorf("value %d is %v; want %v", i, got[i], n)
		}
	}
	return nil
}

// decodeValues decodes a tensor to float64 or int64 values.
func decodeValues(g safetensors.Tensor) ([]any, error) {
	var out []any
	if g.DType.IsFloat() {
		fs, err := g.Float64s()
		for _, f := range fs {
			out = append(out, f)
		}
		return out, err
	}
	is, err := g.Int64s()
	for _, i := range is {
		out = append(out, i)
	}
	return out, err
}

// parseNumber parses an expected value as a float64 or an int64.
func parseNumber(n json.Number, float bool) (any, error) {
	if float {
		return n.Float64()
	}
	return n.Int64()
}

func TestReadFileFixtures(t *testing.T) {
	all := expected(t)
	for _, name := range []string{"dtypes.bin", "views.bin", "proto4.bin"} {
		t.Run(name, func(t *testing.T) {
			got, err := ReadFile(filepath.Join("testdata", name), 0)
			if err != nil {
				t.Fatal(err)
			}
			checkTensors(t, got, all[name])
		})
	}
}

func TestReadShardedFixture(t *testing.T) {
	got, err := ReadSharded(filepath.Join("testdata", "sharded", IndexName), 0)
	if err != nil {
		t.Fatal(err)
	}
	checkTensors(t, got, expected(t)["sharded/"+IndexName])
}

// base returns the address of a tensor's first byte.
func base(t safetensors.Tensor) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(t.Data))) }

// TestReadFileSharesStorages checks that views of one storage alias it, at their offsets, and that a tensor
// saved under two names is one tensor.
func TestReadFileSharesStorages(t *testing.T) {
	got, err := ReadFile("testdata/views.bin", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		view, whole string
		offset      uintptr
	}{
		{"slice", "whole", 3 * 2}, // base[3:7] of float16
		{"lm_head.weight", "embed.weight", 0},
	} {
		if base(got[c.view]) != base(got[c.whole])+c.offset {
			t.Errorf("%s does not alias %s at byte %d", c.view, c.whole, c.offset)
		}
		if cap(got[c.view].Data) != len(got[c.view].Data) {
			t.Errorf("%s: capacity %d past its %d bytes: an append would overwrite a neighbour", c.view, cap(got[c.view].Data), len(got[c.view].Data))
		}
	}
}

// TestReadFileDataIsWritable checks that tensors aliasing the mapping can be written in place, privately.
func TestReadFileDataIsWritable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dtypes.bin")
	orig, err := os.ReadFile("testdata/dtypes.bin")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, orig, 0o644)
	got, err := ReadFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	clear(got["f32"].Data)
	if after, _ := os.ReadFile(path); !slices.Equal(after, orig) {
		t.Error("writing a tensor's Data changed the file")
	}
}

func TestReadFileRefusesFormats(t *testing.T) {
	for _, c := range []struct {
		file   string
		target error
		says   string
	}{
		{"noncontig.bin", ErrFormat, `tensor "transposed": `},
		{"legacy.bin", ErrLegacy, "re-save with PyTorch ≥ 1.6 or convert to safetensors"},
		{"expected.json", ErrFormat, "not a torch.save archive"},
		{"sharded/" + IndexName, ErrFormat, "not a torch.save archive"},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join("testdata", c.file)
			_, err := ReadFile(path, 0)
			if !errors.Is(err, c.target) || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.says) ||
				!strings.HasPrefix(err.Error(), "torchfile: read "+path+": ") {
				t.Errorf("got %v; want an error wrapping %v that names %s and says %q", err, c.target, path, c.says)
			}
		})
	}
}
