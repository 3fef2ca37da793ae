//go:build unix

package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flextrain/flextrain/internal/fileio"
)

// special makes path a FIFO ("fifo") or a symbolic link to /dev/zero ("zero").
func special(t *testing.T, kind, path string) {
	t.Helper()
	os.Remove(path)
	var err error
	if kind == "fifo" {
		err = syscall.Mkfifo(path, 0o644)
	} else {
		err = os.Symlink("/dev/zero", path)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// returns runs read in a goroutine and returns its error, failing the test if it has not returned after a
// generous while: the timeout only turns a hang (a blocked open, an endless read) into a failure.
func returns(t *testing.T, read func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- read() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the read did not return")
		return nil
	}
}

// readers makes a test checkpoint with a special file of kind (see special) in the place named, and returns
// the path to read and the reader.
var readers = map[string]func(t *testing.T, kind string) (string, func(string) error){
	"file": func(t *testing.T, kind string) (string, func(string) error) {
		path := filepath.Join(t.TempDir(), "w.safetensors")
		special(t, kind, path)
		return path, func(p string) error { _, err := ReadFileLimit(p, 1<<20); return err }
	},
	"index": func(t *testing.T, kind string) (string, func(string) error) {
		index := writeShards(t, `{"weight_map": {`+goodMap+`}}`)
		special(t, kind, index)
		return index, func(p string) error { _, err := ReadSharded(p); return err }
	},
	"shard": func(t *testing.T, kind string) (string, func(string) error) {
		index := writeShards(t, `{"weight_map": {`+goodMap+`}}`)
		special(t, kind, filepath.Join(filepath.Dir(index), "model-00002-of-00002.safetensors"))
		return index, func(p string) error { _, err := ReadSharded(p); return err }
	},
}

// TestSpecialFilesAreRefused puts a FIFO, or a link to /dev/zero, where a file, an index or a shard should
// be: each read returns at once with an error that names the path given. A link to /dev/zero as a shard
// leaves the index's folder, which os.Root refuses before fileio sees it.
func TestSpecialFilesAreRefused(t *testing.T) {
	for _, c := range []struct {
		kind, place string
		want        error // nil: any error
	}{
		{"fifo", "file", fileio.ErrNotRegular}, {"fifo", "index", fileio.ErrNotRegular},
		{"fifo", "shard", fileio.ErrNotRegular}, {"zero", "file", fileio.ErrNotRegular},
		{"zero", "index", fileio.ErrNotRegular}, {"zero", "shard", nil},
	} {
		t.Run(c.kind+" as "+c.place, func(t *testing.T) {
			path, read := readers[c.place](t, c.kind)
			err := returns(t, func() error { return read(path) })
			if err == nil || c.want != nil && !errors.Is(err, c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v; want an error (%v) naming %s", err, c.want, path)
			}
		})
	}
}
