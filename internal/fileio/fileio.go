// Package fileio opens the files flextrain reads from outside (configurations, checkpoints, weights, data,
// tokenizers, images) so that a hostile or careless path cannot hang or exhaust the process: only regular
// files are read (a FIFO, a device such as /dev/zero, a socket or a directory is refused before the first
// byte), and never more bytes than the caller allows.
//
// The standard library has no such open: os.Open of a FIFO blocks until a writer appears, and os.ReadFile
// of /dev/zero never ends. Open therefore opens with O_NONBLOCK (which makes the open of a FIFO return at
// once and does nothing to a regular file) and checks the open file's type with fstat, so the check and
// the read concern the same file.
package fileio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
)

// Sentinel errors. Every error of this package names the path and wraps one of these or the cause.
var (
	// ErrNotRegular reports a path that is not a regular file (FIFO, device, socket, directory).
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge reports a file larger than the caller's limit.
	ErrTooLarge = errors.New("file too large")
)

// Open opens path for reading if it is a regular file (symbolic links followed). It never blocks.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenIn is Open for a name inside root, which no name can leave (os.Root).
func OpenIn(root *os.Root, name string) (*os.File, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(f, name); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkRegular refuses an open file that is not a regular file.
func checkRegular(f *os.File, path string) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, typeName(st.Mode()))}
	}
	return nil
}

// typeName names a file mode's type for an error message.
func typeName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// ReadFile reads the regular file at path whole, refusing one of more than limit bytes (limit ≤ 0: no
// limit) before reading it and again if it grows while being read.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, path, limit)
}

// ReadAll reads the open regular file f (named path in errors) whole, within limit bytes as ReadFile.
func ReadAll(f *os.File, path string, limit int64) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if limit > 0 && st.Size() > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, st.Size(), limit)}
	}
	return readBounded(f, path, st.Size(), limit)
}

// readBounded reads r to its end into a buffer sized for the size bytes stat gave (one read more finds the
// end), growing it only if the file grew, and stops with ErrTooLarge past limit.
func readBounded(r io.Reader, path string, size, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = math.MaxInt64 - 1
	}
	buf := make([]byte, 0, min(size, limit)+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: grew past the limit of %d bytes while being read", ErrTooLarge, limit)}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
	}
}

// readPrefix reads the first size bytes of the open file into memory, as Map does where it cannot map;
// release does nothing.
func readPrefix(fh *os.File, size int64) ([]byte, func(), error) {
	b := make([]byte, size)
	if _, err := fh.ReadAt(b, 0); err != nil {
		return nil, nil, fmt.Errorf("file shrank while being read: %w", err)
	}
	return b, func() {}, nil
}
