package featcache

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flextrain/flextrain/internal/atomicfile"
	"github.com/flextrain/flextrain/internal/fileio"
)

// path returns the file of id: <dir>/<key[:2]>/<key>-<view>.<f32|f64>.zst. The two-hex-digit level
// keeps directories to a few thousand entries for a million-image cache.
func (c *Cache) path(id entryID) string {
	k := id.key.String()
	return filepath.Join(c.dir, k[:2], k+"-"+id.view+"."+id.dtype.String()+".zst")
}

// readFile returns the verified payload of id's file, or nil for a miss. wantBytes is the payload size the
// caller takes (any up to MaxValueBytes when < 0): a file too large to hold that is a miss and is never read
// (or, when any size goes, corrupt). A corrupt file is removed; a file of another format version or byte
// order is left to the build that wrote it; a file that is not regular (a FIFO, a link to a device) is a
// disk error, left alone, and never waited on or read.
func (c *Cache) readFile(id entryID, wantBytes int) []byte {
	p := c.path(id)
	b, err := readBounded(p, maxFileSize(wantBytes))
	if errors.Is(err, errMissing) || wantBytes >= 0 && errors.Is(err, errOversize) {
		return nil
	}
	if err == nil {
		var raw []byte
		if raw, err = decodeFile(b, c.fp, id, c.dec); err == nil {
			return raw
		}
	}
	c.count(func(s *Stats) { s.DiskErrors++ })
	if errors.Is(err, errCorrupt) && os.Remove(p) == nil {
		c.count(func(s *Stats) { s.Corrupt++; s.BytesOnDisk -= int64(len(b)) })
	}
	return nil
}

// errMissing marks a file that does not exist: a plain miss, not a disk error.
var errMissing = errors.New("featcache: no file")

// errOversize marks a file larger than any file of the payload size asked for: a value of another size, or
// a damaged file when any size goes.
var errOversize = fmt.Errorf("%w: larger than the entry can be", errCorrupt)

// count applies f to the statistics under the lock.
func (c *Cache) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.st)
	c.mu.Unlock()
}

// readBounded reads the regular file at p, refusing one larger than limit bytes (errOversize) before
// reading it. A file that does not exist is errMissing; one that is not regular is refused by fileio.Open
// without blocking.
func readBounded(p string, limit int64) ([]byte, error) {
	f, err := fileio.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errMissing
	}
	if err != nil {
		return nil, fmt.Errorf("featcache: read %s: %w", p, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("featcache: read %s: %w", p, err)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("featcache: read %s: %w: %d bytes, at most %d", p, errOversize, st.Size(), limit)
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("featcache: read %s: %w", p, err)
	}
	return b, nil
}

// writeFile encodes raw as id's file and puts it in place atomically.
func (c *Cache) writeFile(id entryID, raw []byte) error {
	p := c.path(id)
	var old int64
	if st, err := os.Stat(p); err == nil {
		old = st.Size()
	}
	b := encodeFile(c.fp, id, raw, c.enc)
	err := os.MkdirAll(filepath.Dir(p), 0o755)
	if err != nil {
		err = fmt.Errorf("featcache: write %s: %w", p, err)
	} else {
		err = atomicfile.WriteFile(p, b)
	}
	if err != nil {
		c.count(func(s *Stats) { s.DiskErrors++ })
		return err
	}
	c.count(func(s *Stats) { s.BytesOnDisk += int64(len(b)) - old })
	return nil
}

// staleAfter is the age past which a temp file is a killed writer's leftover, not a live write of
// another process sharing the directory.
const staleAfter = time.Hour

// scanDir sums the sizes of the cache files under dir and removes stale temp files.
func scanDir(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed since the listing: nothing to count
		}
		if atomicfile.IsTemp(d.Name()) && time.Since(info.ModTime()) > staleAfter {
			os.Remove(p)
		} else if strings.HasSuffix(p, ".zst") {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("featcache: scan %s: %w", dir, err)
	}
	return total, nil
}
