package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// recorder is the real file system with the calls recorded and one of them failing.
type recorder struct {
	calls []string
	fail  string // the call that fails with ENOSPC: "create", "write", "sync", "rename", "syncdir"
}

func (r *recorder) Create(path string) (File, error) {
	r.calls = append(r.calls, "create")
	if r.fail == "create" {
		return nil, syscall.ENOSPC
	}
	f, err := OS.Create(path)
	return &recFile{File: f, r: r}, err
}

func (r *recorder) Rename(oldpath, newpath string) error {
	if r.calls = append(r.calls, "rename"); r.fail == "rename" {
		return syscall.EXDEV
	}
	return OS.Rename(oldpath, newpath)
}

func (r *recorder) RemoveAll(path string) error { return OS.RemoveAll(path) }

func (r *recorder) SyncDir(path string) error {
	if r.calls = append(r.calls, "syncdir"); r.fail == "syncdir" {
		return syscall.EIO
	}
	return OS.SyncDir(path)
}

type recFile struct {
	File
	r *recorder
}

func (f *recFile) Write(b []byte) (int, error) {
	if f.r.calls = append(f.r.calls, "write"); f.r.fail == "write" {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(b)
}

func (f *recFile) Sync() error {
	if f.r.calls = append(f.r.calls, "sync"); f.r.fail == "sync" {
		return syscall.EIO
	}
	return f.File.Sync()
}

func (f *recFile) Close() error {
	f.r.calls = append(f.r.calls, "close")
	return f.File.Close()
}

// TestWriteOrder: data reaches the disk before the rename, and the rename before the folder's sync.
func TestWriteOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	r := &recorder{}
	if err := Write(r, path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if want := []string{"create", "write", "sync", "close", "rename", "syncdir"}; !slices.Equal(r.calls, want) {
		t.Errorf("calls %v; want %v", r.calls, want)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("content %q; want new", b)
	}
}

// TestWriteFailures: whichever call fails, the old content stays whole (except once the rename is done),
// no temporary file is left, and the error wraps the cause and names the path.
func TestWriteFailures(t *testing.T) {
	for _, tc := range []struct {
		fail string
		want error
		old  bool // the old content is still there
	}{
		{"create", syscall.ENOSPC, true},
		{"write", syscall.ENOSPC, true},
		{"sync", syscall.EIO, true},
		{"rename", syscall.EXDEV, true},
		{"syncdir", syscall.EIO, false},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if err := WriteFile(path, []byte("old")); err != nil {
				t.Fatal(err)
			}
			err := Write(&recorder{fail: tc.fail}, path, []byte("new"))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("Write with a failing %s: %v; want %v naming %s", tc.fail, err, tc.want, dir)
			}
			if b, _ := os.ReadFile(path); (string(b) == "old") != tc.old {
				t.Errorf("content after a failing %s: %q", tc.fail, b)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("the folder holds %d entries after a failing %s; want only f", len(entries), tc.fail)
			}
		})
	}
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		filepath.Base(TempName("/x/config.yaml")): true,
		"config.yaml":                   false,
		"config.yaml.tmp-xyz":           false,
		"checkpoint-7.tmp-0123456789ab": true,
	} {
		if got := IsTemp(name); got != want {
			t.Errorf("IsTemp(%q) = %v; want %v", name, got, want)
		}
	}
}
