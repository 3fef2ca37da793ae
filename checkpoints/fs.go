package checkpoints

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FS is the file system the package writes and reads through. OS is the real one; tests wrap it to
// inject failures (a short write, ENOSPC, a failing Sync or Rename) and to record the order of calls.
// Implementations must be safe for use by one goroutine at a time.
type FS interface {
	// MkdirAll creates path and its missing parents, like os.MkdirAll.
	MkdirAll(path string) error
	// Mkdir creates one directory and fails if it exists, like os.Mkdir.
	Mkdir(path string) error
	// Create creates a new file for writing and fails if it exists (O_EXCL).
	Create(path string) (File, error)
	// Rename renames a file or directory, like os.Rename.
	Rename(oldpath, newpath string) error
	// RemoveAll removes path and anything below it, like os.RemoveAll.
	RemoveAll(path string) error
	// SyncDir flushes a directory's entries to stable storage (open, fsync, close).
	SyncDir(path string) error
	// ReadDir lists a directory, like os.ReadDir.
	ReadDir(path string) ([]fs.DirEntry, error)
	// ReadFile reads a whole file, like os.ReadFile.
	ReadFile(path string) ([]byte, error)
	// Stat describes a file, like os.Stat.
	Stat(path string) (fs.FileInfo, error)
}

// File is a file open for writing in an FS.
type File interface {
	io.Writer
	// Sync flushes the file's contents to stable storage.
	Sync() error
	// Close closes the file.
	Close() error
}

// OS is the FS of the operating system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) MkdirAll(path string) error { return os.MkdirAll(path, 0o755) }
func (osFS) Mkdir(path string) error    { return os.Mkdir(path, 0o755) }
func (osFS) Create(path string) (File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}
func (osFS) Rename(oldpath, newpath string) error       { return os.Rename(oldpath, newpath) }
func (osFS) RemoveAll(path string) error                { return os.RemoveAll(path) }
func (osFS) ReadDir(path string) ([]fs.DirEntry, error) { return os.ReadDir(path) }
func (osFS) ReadFile(path string) ([]byte, error)       { return os.ReadFile(path) }
func (osFS) Stat(path string) (fs.FileInfo, error)      { return os.Stat(path) }

func (osFS) SyncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// orOS returns fsys, or OS when fsys is nil, so the zero Store uses the real file system.
func orOS(fsys FS) FS {
	if fsys == nil {
		return OS
	}
	return fsys
}

// writeFile creates path, writes data, syncs and closes it: the durable half of an atomic write. On an
// error the file is closed (the caller removes it) and the error names path.
func writeFile(fsys FS, path string, data []byte) error {
	f, err := fsys.Create(path)
	if err != nil {
		return fmt.Errorf("checkpoints: create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("checkpoints: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("checkpoints: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("checkpoints: close %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that a crash leaves either the old file or the new one:
// a temporary file in the same directory, Sync, Close, Rename, then Sync of the directory.
func writeFileAtomic(fsys FS, path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp := path + tmpInfix + randomSuffix()
	if err := writeFile(fsys, tmp, data); err != nil {
		return errors.Join(err, removeTemp(fsys, tmp))
	}
	if err := fsys.Rename(tmp, path); err != nil {
		err = fmt.Errorf("checkpoints: rename %s to %s: %w", tmp, path, err)
		return errors.Join(err, removeTemp(fsys, tmp))
	}
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("checkpoints: sync directory %s: %w", dir, err)
	}
	return nil
}

// removeTemp removes a temporary file or directory left by a failed write, reporting only a failure.
func removeTemp(fsys FS, path string) error {
	if err := fsys.RemoveAll(path); err != nil {
		return fmt.Errorf("checkpoints: remove temporary %s: %w", path, err)
	}
	return nil
}

// tmpInfix marks temporary names: checkpoint-<step>.tmp-<random> and <file>.tmp-<random>.
const tmpInfix = ".tmp-"

// randomSuffix returns 12 hex digits, enough that two saves never pick the same temporary name.
func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:]) // crypto/rand.Read never returns an error (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}
