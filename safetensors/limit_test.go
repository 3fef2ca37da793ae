package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileSize returns the size of path, failing the test when it cannot.
func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// wantTooLarge checks that err is an ErrTooLarge error naming path.
func wantTooLarge(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
		t.Errorf("got %v; want an ErrTooLarge error naming %s", err, path)
	}
}

func TestReadFileLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := WriteFile(path, sample()); err != nil {
		t.Fatal(err)
	}
	size := fileSize(t, path)
	for _, c := range []struct {
		name    string
		limit   int64
		tooLong bool
	}{
		{"no limit", 0, false}, {"negative: no limit", -1, false}, {"exactly the size", size, false},
		{"a byte short", size - 1, true}, {"one byte", 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := ReadFileLimit(path, c.limit)
			if c.tooLong {
				wantTooLarge(t, err, path)
				return
			}
			if err != nil || len(f.Tensors) != len(sample().Tensors) {
				t.Errorf("got %v; want the %d tensors of the file", err, len(sample().Tensors))
			}
		})
	}
}

// sparse writes a valid small file at path and extends it, without writing, to 64 GiB.
func sparse(t *testing.T, path string) {
	t.Helper()
	if err := WriteFile(path, sample()); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 64<<30); err != nil {
		t.Skipf("no sparse file of 64 GiB here: %v", err)
	}
}

func TestReadFileLimitRefusesHugeSparseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.safetensors")
	sparse(t, path)
	var err error
	n := allocated(func() { _, err = ReadFileLimit(path, 1<<20) })
	wantTooLarge(t, err, path)
	if n > 1<<20 {
		t.Errorf("allocated %d bytes; want under 1 MiB", n)
	}
}

func TestReadShardedLimit(t *testing.T) {
	index := writeShards(t, `{"weight_map": {`+goodMap+`}}`)
	dir := filepath.Dir(index)
	total := fileSize(t, filepath.Join(dir, "model-00001-of-00002.safetensors")) +
		fileSize(t, filepath.Join(dir, "model-00002-of-00002.safetensors"))
	for _, c := range []struct {
		name    string
		limit   int64
		tooLong bool
	}{
		{"no limit", 0, false}, {"exactly the shards' size", total, false},
		{"a byte short", total - 1, true}, {"the index's size", fileSize(t, index), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := ReadShardedLimit(index, c.limit)
			if c.tooLong {
				wantTooLarge(t, err, index)
				return
			}
			if err != nil || len(f.Tensors) != 3 {
				t.Errorf("got %v; want the 3 tensors of the shards", err)
			}
		})
	}
}

func TestReadShardedLimitRefusesHugeSparseShard(t *testing.T) {
	index := writeShards(t, `{"weight_map": {`+goodMap+`}}`)
	sparse(t, filepath.Join(filepath.Dir(index), "model-00002-of-00002.safetensors"))
	var err error
	n := allocated(func() { _, err = ReadShardedLimit(index, 1<<20) })
	wantTooLarge(t, err, index)
	if n > 1<<20 {
		t.Errorf("allocated %d bytes; want under 1 MiB", n)
	}
}

func TestReadShardedRefusesHugeIndex(t *testing.T) {
	index := writeShards(t, `{"weight_map": {`+goodMap+`}}`)
	if err := os.Truncate(index, MaxHeaderSize+1); err != nil {
		t.Fatal(err)
	}
	var err error
	n := allocated(func() { _, err = ReadShardedLimit(index, 0) })
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), index) {
		t.Errorf("got %v; want an ErrFormat error naming %s", err, index)
	}
	if n > 1<<20 {
		t.Errorf("allocated %d bytes; want under 1 MiB", n)
	}
}
