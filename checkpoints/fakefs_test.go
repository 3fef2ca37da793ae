package checkpoints

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// errInjected is the failure a faultFS returns unless a test chooses another.
var errInjected = errors.New("injected fault")

// faultFS is the real file system with a log of the calls that matter for durability and with
// injected failures: the n-th call of an operation fails, or writes fail once a byte budget is spent.
type faultFS struct {
	root   string         // paths are logged relative to root
	log    []string       // "op path" or "rename old new", in call order
	counts map[string]int // calls so far, by op
	failAt map[string]int // op → 1-based call number that fails
	err    error          // the injected error (errInjected when nil)
	budget int64          // bytes writes may still write; negative means unlimited
}

// newFaultFS returns a faultFS over root with no faults and an unlimited write budget.
func newFaultFS(root string) *faultFS {
	return &faultFS{root: root, counts: map[string]int{}, failAt: map[string]int{}, budget: -1}
}

// call logs an operation and returns the injected error if this call is the one that must fail.
func (f *faultFS) call(op string, paths ...string) error {
	rel := make([]string, len(paths))
	for i, p := range paths {
		r, err := filepath.Rel(f.root, p)
		if err != nil {
			r = p
		}
		rel[i] = r
	}
	f.log = append(f.log, op+" "+strings.Join(rel, " "))
	f.counts[op]++
	if f.failAt[op] == f.counts[op] {
		return f.fault()
	}
	return nil
}

func (f *faultFS) fault() error {
	if f.err != nil {
		return f.err
	}
	return errInjected
}

func (f *faultFS) MkdirAll(p string) error {
	if err := f.call("mkdirall", p); err != nil {
		return err
	}
	return OS.MkdirAll(p)
}

func (f *faultFS) Mkdir(p string) error {
	if err := f.call("mkdir", p); err != nil {
		return err
	}
	return OS.Mkdir(p)
}

func (f *faultFS) Create(p string) (File, error) {
	if err := f.call("create", p); err != nil {
		return nil, err
	}
	file, err := OS.Create(p)
	if err != nil {
		return nil, err
	}
	return &faultFile{fs: f, path: p, file: file}, nil
}

func (f *faultFS) Rename(a, b string) error {
	if err := f.call("rename", a, b); err != nil {
		return err
	}
	return OS.Rename(a, b)
}

func (f *faultFS) RemoveAll(p string) error {
	if err := f.call("removeall", p); err != nil {
		return err
	}
	return OS.RemoveAll(p)
}

func (f *faultFS) SyncDir(p string) error {
	if err := f.call("syncdir", p); err != nil {
		return err
	}
	return OS.SyncDir(p)
}

func (f *faultFS) ReadDir(p string) ([]fs.DirEntry, error) { return OS.ReadDir(p) }
func (f *faultFS) Open(p string) (fs.File, error)          { return OS.Open(p) }
func (f *faultFS) Stat(p string) (fs.FileInfo, error)      { return OS.Stat(p) }

// faultFile is a file of a faultFS.
type faultFile struct {
	fs   *faultFS
	path string
	file File
}

// Write writes what the byte budget allows; past it, it writes the allowed prefix and fails, like a
// disk that fills up in the middle of a file.
func (w *faultFile) Write(b []byte) (int, error) {
	if err := w.fs.call("write", w.path); err != nil {
		return 0, err
	}
	if w.fs.budget < 0 {
		return w.file.Write(b)
	}
	n := min(int64(len(b)), w.fs.budget)
	w.fs.budget -= n
	m, err := w.file.Write(b[:n])
	if err == nil && int(n) < len(b) {
		err = fmt.Errorf("write budget spent: %w", w.fs.fault())
	}
	return m, err
}

func (w *faultFile) Sync() error {
	if err := w.fs.call("sync", w.path); err != nil {
		return err
	}
	return w.file.Sync()
}

func (w *faultFile) Close() error {
	cerr := w.file.Close() // always release the descriptor, even when the close "fails"
	if err := w.fs.call("close", w.path); err != nil {
		return err
	}
	return cerr
}
