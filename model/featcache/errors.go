package featcache

import "errors"

// Sentinel errors that Put and New wrap with the operation, so callers can tell the cases apart
// with errors.Is.
var (
	// ErrView: a view name is empty, longer than 16 bytes, or has a byte outside [a-z0-9_].
	ErrView = errors.New("featcache: invalid view name")
	// ErrTooLarge: a value exceeds MaxValueBytes.
	ErrTooLarge = errors.New("featcache: value too large")
	// ErrOptions: New was given options it cannot honour.
	ErrOptions = errors.New("featcache: invalid options")
)

// Reasons a cache file is refused. Get never returns them (a refused file is a miss); the tests check
// that every damage gives the right one.
var (
	// errCorrupt: a cache file is damaged, truncated or not where it belongs (its checksum, which
	// covers the fingerprint, key, view and dtype of its name, does not match).
	errCorrupt = errors.New("featcache: corrupt file")
	// errVersion: a cache file has another magic, format version or byte order than this build writes.
	errVersion = errors.New("featcache: unsupported file version")
)
