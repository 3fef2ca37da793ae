package checkpoints

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/flextrain/flextrain/internal/atomicfile"
	"github.com/flextrain/flextrain/internal/fileio"
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
	// Open opens a file for reading; the package reads at most the size its Stat reports. OS opens regular
	// files only and never blocks (a FIFO, a device or a directory is an error wrapping
	// fileio.ErrNotRegular), so a hostile checkpoint cannot hang a reader or feed it endless bytes.
	Open(path string) (fs.File, error)
	// Stat describes a file, like os.Stat.
	Stat(path string) (fs.FileInfo, error)
}

// File is a file open for writing in an FS.
type File = atomicfile.File

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
func (osFS) Stat(path string) (fs.FileInfo, error)      { return os.Stat(path) }

func (osFS) Open(path string) (fs.File, error) {
	f, err := fileio.Open(path)
	if err != nil { // not a nil *os.File in a non-nil fs.File
		return nil, err
	}
	return f, nil
}

func (osFS) SyncDir(path string) error { return atomicfile.SyncDir(path) }

// openSized opens path for reading and checks, before reading a byte, that it is a regular file of want
// bytes (any size when want < 0) and of at most maxSize bytes, and returns it with its size. A file of another
// type or size is ErrCorrupt; the FS's own errors (a missing file, a permission) are returned as they are.
func openSized(fsys FS, path string, want, maxSize int64) (fs.File, int64, error) {
	f, err := fsys.Open(path)
	if errors.Is(err, fileio.ErrNotRegular) {
		return nil, 0, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if err != nil {
		return nil, 0, err
	}
	size, err := checkSize(f, want, maxSize)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// checkSize returns the size of the open file f after checking its type and size as openSized does.
func checkSize(f fs.File, want, maxSize int64) (int64, error) {
	st, err := f.Stat()
	switch {
	case err != nil:
		return 0, err
	case !st.Mode().IsRegular():
		return 0, fmt.Errorf("%w: not a regular file (%s)", ErrCorrupt, st.Mode().Type())
	case want >= 0 && st.Size() != want:
		return 0, fmt.Errorf("%w: %d bytes, manifest lists %d", ErrCorrupt, st.Size(), want)
	case st.Size() > maxSize:
		return 0, fmt.Errorf("%w: %d bytes, more than the %d such a file may have", ErrCorrupt, st.Size(), maxSize)
	}
	return st.Size(), nil
}

// readAll reads the size bytes of a file whose size openSized checked; a file that has shrunk since is
// ErrCorrupt.
func readAll(r io.Reader, size int64) ([]byte, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: read %d bytes: %w", ErrCorrupt, size, err)
	}
	return b, nil
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
	if err := atomicfile.WriteDurable(fsys, path, data); err != nil {
		return fmt.Errorf("checkpoints: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that a crash leaves either the old file or the new one
// (atomicfile.Write).
func writeFileAtomic(fsys FS, path string, data []byte) error {
	if err := atomicfile.Write(fsys, path, data); err != nil {
		return fmt.Errorf("checkpoints: %w", err)
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
const tmpInfix = atomicfile.TmpInfix

// randomSuffix returns 12 hex digits, enough that two saves never pick the same temporary name.
func randomSuffix() string { return strings.TrimPrefix(atomicfile.TempName(""), tmpInfix) }
