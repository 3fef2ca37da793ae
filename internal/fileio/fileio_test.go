package fileio

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		path  string
		limit int64
		want  error // nil: the file's bytes
	}{
		{"regular", regular, 0, nil},
		{"regular within limit", regular, 10, nil},
		{"regular over limit", regular, 9, ErrTooLarge},
		{"fifo", fifo, 0, ErrNotRegular},
		{"link to /dev/zero", zero, 0, ErrNotRegular},
		{"directory", dir, 0, ErrNotRegular},
		{"missing", filepath.Join(dir, "missing"), 0, os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var b []byte
			var err error
			go func() { b, err = ReadFile(tc.path, tc.limit); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("ReadFile(%s) did not return", tc.path)
			}
			if tc.want == nil {
				if err != nil || string(b) != "0123456789" {
					t.Fatalf("ReadFile = %q, %v; want the file's bytes", b, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadFile error = %v; want %v", err, tc.want)
			}
		})
	}
}

func TestOpenIn(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ok"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := OpenIn(root, "fifo"); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("OpenIn(fifo) = %v; want ErrNotRegular", err)
	}
	f, err := OpenIn(root, "ok")
	if err != nil {
		t.Fatalf("OpenIn(ok) = %v", err)
	}
	f.Close()
}

// TestReadFileAllocatesItsSize: reading a file allocates its size once, not a doubling buffer.
func TestReadFileAllocatesItsSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b, err := ReadFile(path, 0)
	runtime.ReadMemStats(&after)
	if err != nil || len(b) != 1<<20 {
		t.Fatalf("ReadFile = %d bytes, %v", len(b), err)
	}
	if used := after.TotalAlloc - before.TotalAlloc; used > 1<<20+64<<10 {
		t.Errorf("reading 1 MiB allocated %d bytes; want about 1 MiB", used)
	}
}
