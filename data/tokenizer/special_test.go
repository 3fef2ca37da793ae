//go:build unix

package tokenizer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flextrain/flextrain/internal/fileio"
)

// TestLoadRefusesSpecialAndHugeFiles: Load of a FIFO or a link to /dev/zero fails at once, and so does a
// file or a gzip stream past MaxFileBytes. Each Load runs in a goroutine so that a regression that blocks
// fails after a minute instead of hanging.
func TestLoadRefusesSpecialAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "tokenizer.fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	bomb := filepath.Join(dir, "bomb.json.gz")
	writeBomb(t, bomb, MaxFileBytes+1)
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, nil, 0o644); err != nil || os.Truncate(big, MaxFileBytes+1) != nil {
		t.Fatalf("sparse file: %v", err)
	}
	tests := []struct{ name, path string }{{"fifo", fifo}, {"gzip bomb", bomb}, {"big file", big}}
	want := []error{fileio.ErrNotRegular, fileio.ErrTooLarge, fileio.ErrTooLarge}
	if _, err := os.Stat("/dev/zero"); err == nil {
		zero := filepath.Join(dir, "tokenizer.zero")
		if err := os.Symlink("/dev/zero", zero); err != nil {
			t.Fatal(err)
		}
		tests, want = append(tests, struct{ name, path string }{"link to /dev/zero", zero}), append(want, fileio.ErrNotRegular)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Load(tt.path); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, want[i]) {
					t.Errorf("Load(%s): got %v; want %v", tt.path, err, want[i])
				}
			case <-time.After(time.Minute):
				t.Fatalf("Load(%s) still blocked after a minute", tt.path)
			}
		})
	}
}

// writeBomb writes a gzip file of n zero bytes (compressed some thousand times).
func writeBomb(t *testing.T, path string, n int) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zero))
		zw.Write(zero[:k])
		n -= k
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
