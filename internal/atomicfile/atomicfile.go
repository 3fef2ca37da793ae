// Package atomicfile writes a file so that a crash, a full disk or a failed rename leaves either the old
// file or the new one, never a part of one: a temporary file <path>.tmp-<random> in the same folder is
// written, synced and closed, renamed over path, and the folder is synced so that the rename survives a
// crash. Checkpoints, the feature cache, the generated dataset, a run's configuration and figures are all
// written this one way. The standard library has no atomic write; the sequence is short enough to own.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// File is a file open for writing.
type File interface {
	io.Writer
	// Sync flushes the file's contents to stable storage.
	Sync() error
	// Close closes the file.
	Close() error
}

// FS is what a write needs of a file system. OS is the real one; tests give one that fails the way a full
// disk or a broken rename does.
type FS interface {
	// Create creates a new file for writing and fails if it exists (O_EXCL).
	Create(path string) (File, error)
	// Rename renames a file or directory, like os.Rename.
	Rename(oldpath, newpath string) error
	// RemoveAll removes path and anything below it, like os.RemoveAll.
	RemoveAll(path string) error
	// SyncDir flushes a directory's entries to stable storage.
	SyncDir(path string) error
}

// OS is the FS of the operating system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) Create(path string) (File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
}
func (osFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
func (osFS) RemoveAll(path string) error          { return os.RemoveAll(path) }
func (osFS) SyncDir(path string) error            { return SyncDir(path) }

// SyncDir flushes the entries of the directory at path on the real file system (open, fsync, close).
func SyncDir(path string) error {
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

// TmpInfix marks temporary names: <name>.tmp-<12 hex digits>.
const TmpInfix = ".tmp-"

// IsTemp reports whether name (a base name) is one of the temporary names this package makes.
func IsTemp(name string) bool {
	_, suffix, ok := strings.Cut(name, TmpInfix)
	if !ok || len(suffix) != 12 {
		return false
	}
	_, err := hex.DecodeString(suffix)
	return err == nil
}

// TempName returns a fresh temporary name for path: path.tmp-<12 random hex digits>, enough that two
// writers never pick the same.
func TempName(path string) string {
	var b [6]byte
	rand.Read(b[:]) // crypto/rand.Read never returns an error (Go ≥ 1.24)
	return path + TmpInfix + hex.EncodeToString(b[:])
}

// WriteFile replaces path with data on the real file system, atomically.
func WriteFile(path string, data []byte) error { return Write(OS, path, data) }

// Write replaces path with data on fsys, atomically. On an error the temporary file is removed and the
// error names the path and wraps the cause (errors.Is(err, syscall.ENOSPC) works).
func Write(fsys FS, path string, data []byte) error {
	tmp := TempName(path)
	if err := WriteDurable(fsys, tmp, data); err != nil {
		return errors.Join(err, removeTemp(fsys, tmp))
	}
	if err := fsys.Rename(tmp, path); err != nil {
		err = fmt.Errorf("rename %s to %s: %w", tmp, path, err)
		return errors.Join(err, removeTemp(fsys, tmp))
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("sync directory %s: %w", filepath.Dir(path), err)
	}
	return nil
}

// WriteDurable creates path, writes data, syncs and closes it: the durable half of an atomic write, for a
// caller that renames a whole folder of such files into place itself (a checkpoint). On an error the file
// is closed, the caller removes it, and the error names path.
func WriteDurable(fsys FS, path string, data []byte) error {
	f, err := fsys.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// removeTemp removes a temporary file left by a failed write, reporting only a failure.
func removeTemp(fsys FS, path string) error {
	if err := fsys.RemoveAll(path); err != nil {
		return fmt.Errorf("remove temporary %s: %w", path, err)
	}
	return nil
}
