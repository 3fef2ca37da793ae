//go:build unix

package torchfile

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const (
	shard1 = "pytorch_model-00001-of-00002.bin"
	shard2 = "pytorch_model-00002-of-00002.bin"
)

// fixtureMap is the weight_map of the committed two-shard fixture.
func fixtureMap(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sharded", IndexName))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	return idx.WeightMap
}

// shardFolder copies the fixture's shards into <tmp>/ckpt, with a third copy of shard 1 outside it at
// <tmp>/outside.bin, a link ckpt/link.bin to it and a FIFO ckpt/fifo.bin, and writes an index whose
// weight_map is the fixture's changed by edit. It returns the index's path.
func shardFolder(t *testing.T, edit func(map[string]string)) string {
	t.Helper()
	top := t.TempDir()
	dir := filepath.Join(top, "ckpt")
	os.Mkdir(dir, 0o755)
	for _, s := range []string{shard1, shard2} {
		b, err := os.ReadFile(filepath.Join("testdata", "sharded", s))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, s), b, 0o644)
		if s == shard1 {
			os.WriteFile(filepath.Join(top, "outside.bin"), b, 0o644)
		}
	}
	os.Symlink(filepath.Join("..", "outside.bin"), filepath.Join(dir, "link.bin"))
	syscall.Mkfifo(filepath.Join(dir, "fifo.bin"), 0o644)
	m := fixtureMap(t)
	edit(m)
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": m})
	index := filepath.Join(dir, IndexName)
	os.WriteFile(index, b, 0o644)
	return index
}

// moveShard1 maps shard 1's tensors to another path.
func moveShard1(to string) func(map[string]string) {
	return func(m map[string]string) {
		for name, s := range m {
			if s == shard1 {
				m[name] = to
			}
		}
	}
}

func TestReadShardedRefuses(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "abs.bin")
	b, _ := os.ReadFile(filepath.Join("testdata", "sharded", shard1))
	os.WriteFile(outside, b, 0o644)
	for _, c := range []struct {
		name string
		edit func(map[string]string)
		says string
	}{
		{"a path up out of the folder", moveShard1("../outside.bin"), "leaves the index's folder"},
		{"a path up and back in", moveShard1("../ckpt/" + shard1), "leaves the index's folder"},
		{"an absolute path", moveShard1(outside), "leaves the index's folder"},
		{"a symbolic link out of the folder", moveShard1("link.bin"), "escapes"},
		{"a FIFO", moveShard1("fifo.bin"), "not a regular file"},
		{"a missing shard", moveShard1("nowhere.bin"), "no such file"},
		{"a tensor in another shard than mapped", func(m map[string]string) { m["lm_head.weight"] = shard1 }, "puts it in"},
		{"a mapped tensor no shard has", func(m map[string]string) { m["extra.weight"] = shard2 }, `"extra.weight": the weight_map puts it in`},
		{"a shard tensor absent from the map", func(m map[string]string) { delete(m, "lm_head.weight") }, "not in the weight_map"},
		{"an empty weight_map", func(m map[string]string) { clear(m) }, "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			index := shardFolder(t, c.edit)
			_, err := ReadSharded(index, 0)
			if err == nil || !strings.Contains(err.Error(), c.says) || !strings.HasPrefix(err.Error(), "torchfile: read index "+index+": ") {
				t.Errorf("got %v; want an error naming the index and saying %q", err, c.says)
			}
		})
	}
}

func TestReadShardedIndexFormat(t *testing.T) {
	for _, c := range []struct{ name, index string }{
		{"not JSON", `{"weight_map": `},
		{"a repeated key", `{"weight_map": {"a": "x.bin", "a": "y.bin"}}`},
		{"a repeated weight_map", `{"weight_map": {"a": "x.bin"}, "weight_map": {"b": "x.bin"}}`},
		{"a shard that is not a string", `{"weight_map": {"a": 1}}`},
		{"no weight_map", `{"metadata": {}}`},
		{"data after the object", `{"weight_map": {"a": "x.bin"}} {}`},
		{"an array", `[]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, IndexName, []byte(c.index))
			_, err := ReadSharded(path, 0)
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v; want an ErrFormat error naming %s", err, path)
			}
		})
	}
}

func TestReadShardedLimit(t *testing.T) {
	var total int64
	for _, s := range []string{shard1, shard2} {
		st, err := os.Stat(filepath.Join("testdata", "sharded", s))
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
	}
	index := filepath.Join("testdata", "sharded", IndexName)
	for _, c := range []struct {
		limit   int64
		tooLong bool
	}{{0, false}, {total, false}, {total - 1, true}, {1, true}} {
		got, err := ReadSharded(index, c.limit)
		if c.tooLong != errors.Is(err, ErrTooLarge) || (!c.tooLong && len(got) != len(fixtureMap(t))) {
			t.Errorf("limit %d of %d: got %d tensors, %v; want too large: %v", c.limit, total, len(got), err, c.tooLong)
		}
	}
}

// TestReadFileSpecialFiles checks that a device, a folder and a FIFO are refused at once, naming them.
func TestReadFileSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo.bin")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/zero", t.TempDir(), fifo} {
		if _, err := ReadFile(path, 0); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: got %v; want an error naming it", path, err)
		}
	}
}
