//go:build unix

package safetensors

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"
)

// FuzzIndex's allocation bound: decodeIndex may allocate indexAllocPerByte bytes per input byte plus
// indexAllocBase. encoding/json's Decoder allocates about 300 bytes for every scalar it reads (its scanner
// finds the end of a top-level value by building, and then dropping, a SyntaxError for the byte after it),
// so one metadata or weight_map entry, a key and a value in as few as 6 bytes of input (`"a":0,`), costs
// up to about 700 bytes with the map entries: about 120 bytes per input byte at worst (up to 85 measured,
// on objects of one-letter keys). 256 leaves room for that and still fails a cost that grows faster than
// the input; 64 KiB covers the decoder's fixed buffers and whatever else the process allocates meanwhile.
const (
	indexAllocPerByte = 256
	indexAllocBase    = 64 << 10
)

// FuzzIndex checks that no index makes decodeIndex panic, allocate more than its bound, or fail with
// anything but ErrFormat, and that whatever it accepts is read from a fixed folder (the two shards of
// writeShards, a link out of the folder, and a FIFO) without a panic or a hang, succeeding only with
// exactly the weight_map's tensors from the folder's own shards.
func FuzzIndex(f *testing.F) {
	dir := filepath.Dir(writeShards(f, `{"weight_map": {`+goodMap+`}}`))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.safetensors"), 0o644); err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		`{"metadata": {"total_size": 20, "format": "pt", "nested": {"a": [1, "b", null]}}, "weight_map": {` + goodMap + `}}`,
		`{"weight_map": {"a.weight": "./model-00001-of-00002.safetensors", "a.bias": "model-00001-of-00002.safetensors"}}`,
		`{"weight_map": {"b.weight": "fifo.safetensors"}}`,
		`{"weight_map": {"b.weight": "link.safetensors"}}`,
		`{"weight_map": {"b.weight": "../x.safetensors"}}`,
		`{"weight_map": {"a": "x", "a": "y"}}`,
		`{"metadata": {"k": "\u0041"}, "weight_map": {}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var idx *index
		var err error
		n := allocated(func() { idx, err = decodeIndex(b) })
		if bound := indexAllocPerByte*uint64(len(b)) + indexAllocBase; n > bound {
			t.Fatalf("decodeIndex of %d bytes allocated %d; want at most %d", len(b), n, bound)
		}
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v; want an ErrFormat error", err)
			}
			return
		}
		checkIndex(t, idx)
		checkReadShards(t, dir, idx)
	})
}

// checkIndex checks a decoded index: a weight_map, and its shards listed sorted, once each.
func checkIndex(t *testing.T, idx *index) {
	t.Helper()
	shards := idx.shards()
	if len(idx.weightMap) == 0 || len(shards) == 0 {
		t.Fatalf("got %d tensors in %d shards; want at least one", len(idx.weightMap), len(shards))
	}
	for i := 1; i < len(shards); i++ {
		if shards[i-1] >= shards[i] {
			t.Fatalf("shards %q: want them sorted, each once", shards)
		}
	}
}

// checkReadShards reads the shards of idx from dir and, when that succeeds, checks that it read exactly the
// tensors of the weight_map, from the real shards of the folder only.
func checkReadShards(t *testing.T, dir string, idx *index) {
	t.Helper()
	var f *File
	err := returns(t, func() (err error) { f, err = readShards(dir, idx, 1<<20); return err })
	if err != nil {
		return
	}
	if len(f.Tensors) != len(idx.weightMap) {
		t.Fatalf("got %d tensors; want the weight_map's %d", len(f.Tensors), len(idx.weightMap))
	}
	for _, shard := range idx.shards() {
		if c := filepath.Clean(shard); c != "model-00001-of-00002.safetensors" && c != "model-00002-of-00002.safetensors" {
			t.Fatalf("read shard %q; want only the folder's two shards", shard)
		}
	}
}
