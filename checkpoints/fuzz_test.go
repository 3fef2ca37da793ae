package checkpoints

import (
	"errors"
	"io/fs"
	"runtime"
	"slices"
	"testing"
	"testing/fstest"
)

// memFS is a read-only FS over an in-memory tree, so the fuzzer loads checkpoints without a disk.
type memFS struct{ fstest.MapFS }

func (memFS) MkdirAll(string) error                     { return errors.ErrUnsupported }
func (memFS) Mkdir(string) error                        { return errors.ErrUnsupported }
func (memFS) Create(string) (File, error)               { return nil, errors.ErrUnsupported }
func (memFS) Rename(string, string) error               { return errors.ErrUnsupported }
func (memFS) RemoveAll(string) error                    { return errors.ErrUnsupported }
func (memFS) SyncDir(string) error                      { return errors.ErrUnsupported }
func (m memFS) ReadDir(p string) ([]fs.DirEntry, error) { return m.MapFS.ReadDir(p) }
func (m memFS) Open(p string) (fs.File, error)          { return m.MapFS.Open(p) }
func (m memFS) Stat(p string) (fs.FileInfo, error)      { return m.MapFS.Stat(p) }

// FuzzLoad feeds Load a checkpoint with one file replaced by arbitrary bytes. With reseal set, the
// frame checksum and the manifest are recomputed to match, so the fuzzer reaches the zstd decoder, the
// safetensors parser and the manifest decoder behind the checksums. Load must never panic, whatever it
// accepts must be self-consistent, and what it allocates must stay within its bounds: a few times the
// input, plus the Store's limits and the zstd window of each tensor file, however much the input claims.
func FuzzLoad(f *testing.F) {
	files, err := encodeCheckpoint(tinyCheckpoint(7), Limits{})
	if err != nil {
		f.Fatal(err)
	}
	for i, nf := range files {
		f.Add(uint8(i), nf.data, false)
		f.Add(uint8(i), nf.data, true)
		f.Add(uint8(i), nf.data[:len(nf.data)/2], true)
	}
	limits := tinyLimits()
	bound := func(input int) uint64 {
		return uint64(16*input) + uint64(limits.Weights+limits.Optimizer) + 2*(zstdWindow+1<<20) + 1<<20
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte, reseal bool) {
		s := Store{FS: memFS{craftTree(files, int(which)%len(files), data, reseal)}, Limits: limits}
		var ck *Checkpoint
		var err error
		if n := allocatedBy(func() { ck, err = s.Load("out/checkpoint-7") }); n > bound(len(data)) {
			t.Fatalf("Load allocated %d bytes for a %d-byte input; want at most %d", n, len(data), bound(len(data)))
		}
		if err != nil {
			if ck != nil {
				t.Fatalf("Load returned a checkpoint with error %v", err)
			}
			return
		}
		for name, tensor := range ck.Weights {
			if err := tensor.Check(); err != nil {
				t.Fatalf("accepted inconsistent tensor %q: %v", name, err)
			}
		}
	})
}

// allocatedBy returns the bytes the Go heap allocated while f ran (bytesAllocated without its GC, which
// would slow the fuzzer down for nothing: TotalAlloc only grows).
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// craftTree lays out the checkpoint files under out/checkpoint-7 with file i replaced by data; with
// reseal, a framed replacement gets a valid checksum and the manifest is rebuilt to match.
func craftTree(files []namedFile, i int, data []byte, reseal bool) fstest.MapFS {
	files = slices.Clone(files)
	if reseal && len(data) >= headerSize+trailerSize && files[i].name != stateFile && files[i].name != configFile {
		data = refreeze(data)
	}
	files[i].data = data
	if reseal && files[i].name != manifestFile {
		var listed []listedFile
		for _, nf := range files[:len(payloadFiles)] {
			listed = append(listed, describe(nf.name, nf.data))
		}
		files[len(files)-1].data = encodeManifest(7, listed)
	}
	tree := fstest.MapFS{}
	for _, nf := range files {
		tree["out/checkpoint-7/"+nf.name] = &fstest.MapFile{Data: nf.data}
	}
	return tree
}
