//go:build unix

package featcache

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// returns runs get in a goroutine and returns its result, failing the test if it has not returned after a
// generous while: the timeout only turns a hang (a blocked open, an endless read) into a failure.
func returns(t *testing.T, get func() bool) bool {
	t.Helper()
	done := make(chan bool, 1)
	go func() { done <- get() }()
	select {
	case ok := <-done:
		return ok
	case <-time.After(20 * time.Second):
		t.Fatal("Get did not return")
		return false
	}
}

// TestSpecialFileIsAMiss puts a FIFO, or a link to /dev/zero, where an entry's file should be: Get misses
// at once, counts a disk error, leaves the file alone (it is no cache file), and a Put replaces it.
func TestSpecialFileIsAMiss(t *testing.T) {
	for _, kind := range []string{"fifo", "zero"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			c, k := newCache(t, dir, -1), keyOf(1)
			p := filePath[float32](dir, k, ViewLR)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if kind == "fifo" {
				must(t, syscall.Mkfifo(p, 0o644))
			} else {
				must(t, os.Symlink("/dev/zero", p))
			}
			if returns(t, func() bool { _, ok := Get[float32](c, k, ViewLR); return ok }) {
				t.Fatal("Get: got a hit; want a miss")
			}
			if s := c.Stats(); s.DiskErrors != 1 || s.Corrupt != 0 || s.Misses != 1 {
				t.Errorf("stats: %d disk errors, %d corrupt, %d misses; want 1, 0, 1", s.DiskErrors, s.Corrupt, s.Misses)
			}
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("the %s: got %v; want it left in place", kind, err)
			}
			mustPut(t, c, k, ViewLR, normals[float32](8, 1))
			wantGet(t, c, k, ViewLR, normals[float32](8, 1))
		})
	}
}
