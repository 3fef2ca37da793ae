//go:build unix

package model

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/safetensors"
)

// makeSpecial replaces path by a FIFO ("fifo") or a symbolic link to /dev/zero ("zero").
func makeSpecial(t *testing.T, kind, path string) {
	t.Helper()
	must(t, os.Remove(path))
	if kind == "fifo" {
		must(t, syscall.Mkfifo(path, 0o644))
	} else {
		must(t, os.Symlink("/dev/zero", path))
	}
}

// loadReturns runs LoadWeights in a goroutine and returns its error, failing the test if it has not
// returned after a generous while: the timeout only turns a hang (a blocked open, an endless read) into a
// failure.
func loadReturns(t *testing.T, path string, cfg Config) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := LoadWeights(path, cfg, tensor.Float32); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("LoadWeights(%s) did not return", path)
		return nil
	}
}

// TestLoadWeightsRefusesSpecialFiles puts a FIFO, or a link to /dev/zero, in place of the weights file of
// each layout (writeLayouts' order: file, folder, sharded folder, index) and of a shard: LoadWeights returns
// at once with an error naming the path given. A link to /dev/zero as a shard leaves the index's folder,
// which os.Root refuses before fileio sees it; every other case is fileio.ErrNotRegular.
func TestLoadWeightsRefusesSpecialFiles(t *testing.T) {
	cfg, ws := goldenWeights(t)
	for _, kind := range []string{"fifo", "zero"} {
		for _, c := range []struct {
			name    string
			layout  int
			replace func(path string) string
		}{
			{"file", 0, func(p string) string { return p }},
			{"model.safetensors of a folder", 1, func(p string) string { return filepath.Join(p, "model.safetensors") }},
			{"index of a folder", 2, func(p string) string { return filepath.Join(p, safetensors.IndexName) }},
			{"index", 3, func(p string) string { return p }},
			{"shard", 3, func(p string) string { return filepath.Join(filepath.Dir(p), weightMapFile(1)) }},
		} {
			t.Run(kind+" as "+c.name, func(t *testing.T) {
				path := writeLayouts(t, ws)[c.layout]
				makeSpecial(t, kind, c.replace(path))
				err := loadReturns(t, path, cfg)
				anyErr := kind == "zero" && c.name == "shard"
				if err == nil || !anyErr && !errors.Is(err, fileio.ErrNotRegular) || !strings.Contains(err.Error(), path) {
					t.Errorf("got %v; want an error naming %s (fileio.ErrNotRegular: %v)", err, path, !anyErr)
				}
			})
		}
	}
}
