package torchfile

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"

	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/safetensors"
)

// ReadFile reads the tensors of the state_dict that torch.save wrote to path (a dict or OrderedDict of
// names to tensors, buffers such as CLIP's int64 position_ids included), each contiguous, as safetensors
// tensors of the same element type. The file may hold at most limit bytes (limit ≤ 0: no limit), and its
// storages may claim no more: a larger file or claim is refused, with an error wrapping ErrTooLarge, before
// anything is allocated for it. Only a regular file is opened (internal/fileio). A pickle that names a
// global outside the allow-list is refused with ErrUnsafe, a malformed or unsupported file (the legacy
// format among them) with ErrFormat; every error names path. Data alias the file's memory mapping where
// they can (see the package documentation for how long it lives).
func ReadFile(path string, limit int64) (map[string]safetensors.Tensor, error) {
	fh, err := fileio.Open(path)
	if err != nil {
		return nil, fmt.Errorf("torchfile: read %s: %w", path, err)
	}
	defer fh.Close()
	ts, _, _, err := readOpen(fh, normLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("torchfile: read %s: %w", path, err)
	}
	return ts, nil
}

// normLimit turns a caller's limit (≤ 0: none) into a positive byte count.
func normLimit(limit int64) int64 {
	if limit <= 0 {
		return math.MaxInt64
	}
	return limit
}

// readOpen reads the open regular file fh of at most limit bytes (positive) and returns its tensors, its
// size and a function that releases its mapping, for a caller that drops the tensors after all. The
// mapping is released at once when the read fails or no tensor aliases it.
func readOpen(fh *os.File, limit int64) (map[string]safetensors.Tensor, int64, func(), error) {
	size, err := statSize(fh, limit)
	if err != nil {
		return nil, 0, nil, err
	}
	b, release, err := fileio.Map(fh, size)
	if err != nil {
		return nil, 0, nil, err
	}
	ts, aliased, err := decodeMapped(b, limit)
	if err != nil || !aliased {
		release()
		release = func() {}
	}
	return ts, size, release, err
}

// statSize returns the size of the open file, refusing one over limit, an empty one and one too large for
// memory, before anything is read or mapped.
func statSize(fh *os.File, limit int64) (int64, error) {
	st, err := fh.Stat()
	if err != nil {
		return 0, err
	}
	switch size := st.Size(); {
	case size > limit:
		return 0, fmt.Errorf("%w: file of %d bytes, the limit is %d", ErrTooLarge, size, limit)
	case size == 0:
		return 0, formatErrorf("empty file")
	case uint64(size) > math.MaxInt:
		return 0, fmt.Errorf("file of %d bytes is too large to address", size)
	}
	return st.Size(), nil
}

// decodeMapped is decode for a mapped file: should the file be truncated meanwhile, touching a page past
// its new end faults, and that fault becomes an error instead of a crash.
func decodeMapped(b []byte, limit int64) (ts map[string]safetensors.Tensor, aliased bool, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			ts, aliased, err = nil, false, fmt.Errorf("the file changed while being read: %v", r)
		}
	}()
	return decode(b, limit)
}
