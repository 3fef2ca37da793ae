package featcache

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// View names of the two feature sets of an image: the tower's output on the LR view [n, Cv] and on
// the Z² HR crops [Z²·n, Cv] (crop-major, as the model runs them).
const (
	ViewLR = "lr"
	ViewHR = "hr"
)

// DefaultMaxMemoryBytes is the memory bound when Options.MaxMemoryBytes is 0.
const DefaultMaxMemoryBytes = 1 << 30

// Options configures New.
type Options struct {
	// Dir is the root of the disk tier; files go under Dir/<Fingerprint>/. "" keeps the cache in
	// memory only.
	Dir string
	// Fingerprint names everything the features depend on besides the pixels (see Fingerprint). It
	// is required with Dir: a cache on disk without one could serve another model's features. It may
	// hold only [0-9A-Za-z_.-], at most 128 bytes, not starting with '.'.
	Fingerprint string
	// MaxMemoryBytes bounds the payload bytes the memory tier holds: 0 means DefaultMaxMemoryBytes,
	// a negative value turns the memory tier off (every hit then reads the disk).
	MaxMemoryBytes int64
}

// Cache holds frozen vision-tower features by image key and view: an LRU in memory in front of
// zstd files on disk. It is safe for concurrent use. Values go in and come out as copies, so no caller
// can change what another one reads. A nil *Cache is a valid, disabled cache: every Get misses and
// Put does nothing, so the model can hold one unconditionally. A Cache keeps no goroutines or open
// files between calls and needs no Close.
//
// Files are written to a temp file in the same directory and renamed into place, so a reader (in
// this process or another sharing Dir) sees a whole file or none. There is no fsync: a machine crash
// can at worst leave a torn file, which the checksum turns into a miss.
type Cache struct {
	dir string // Dir/<fingerprint>, or "" for memory only
	fp  string
	enc *zstd.Encoder
	dec *zstd.Decoder

	mu  sync.Mutex // guards mem and st
	mem *lru
	st  Stats
}

// New opens a cache. With a Dir it creates Dir/<Fingerprint>, removes temp files older than an hour
// (left by a killed writer) and sums the existing files' sizes for Stats.BytesOnDisk.
func New(opts Options) (*Cache, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	c := &Cache{fp: opts.Fingerprint, mem: newLRU(memoryBound(opts.MaxMemoryBytes))}
	if opts.Dir == "" {
		return c, nil
	}
	c.dir = filepath.Join(opts.Dir, opts.Fingerprint)
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("featcache: open %s: %w", c.dir, err)
	}
	n, err := scanDir(c.dir)
	if err != nil {
		return nil, err
	}
	c.st.BytesOnDisk = n
	c.enc, c.dec = newCodec()
	return c, nil
}

// check validates the options: one error for the first bad field.
func (o Options) check() error {
	if o.Dir != "" && o.Fingerprint == "" {
		return fmt.Errorf("%w: Dir %s is set without a Fingerprint", ErrOptions, o.Dir)
	}
	if o.Fingerprint != "" && !validName(o.Fingerprint, 128, true) {
		return fmt.Errorf("%w: Fingerprint %q: want 1–128 bytes of [0-9A-Za-z_.-], not starting with '.'", ErrOptions, o.Fingerprint)
	}
	return nil
}

// memoryBound turns Options.MaxMemoryBytes into the LRU's bound.
func memoryBound(n int64) int64 {
	switch {
	case n == 0:
		return DefaultMaxMemoryBytes
	case n < 0:
		return 0
	}
	return n
}

// validName reports whether s is 1…max bytes of [0-9a-z_] (plus [A-Z.-] when wide), not starting
// with '.': safe as a path element on every file system.
func validName(s string, max int, wide bool) bool {
	if s == "" || len(s) > max || s[0] == '.' {
		return false
	}
	for _, r := range []byte(s) {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_'
		if !ok && !(wide && (r >= 'A' && r <= 'Z' || r == '.' || r == '-')) {
			return false
		}
	}
	return true
}

// checkView refuses a view name that could not be a file name part.
func checkView(view string) error {
	if !validName(view, 16, false) {
		return fmt.Errorf("%w: %q: want 1–16 bytes of [a-z0-9_]", ErrView, view)
	}
	return nil
}

// newCodec returns the shared zstd encoder and decoder; both are safe for concurrent EncodeAll and
// DecodeAll. The decoder's cap limit makes every DecodeAll stop at the capacity of the buffer it is
// given, which decodeFile sizes from the verified header.
func newCodec() (*zstd.Encoder, *zstd.Decoder) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(2),
		zstd.WithEncoderCRC(false)) // the file's CRC-32C covers the frame
	if err != nil { // only bad options fail, and these are constant
		panic("featcache: zstd encoder: " + err.Error())
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxMemory(MaxValueBytes),
		zstd.WithDecoderConcurrency(2))
	if err != nil {
		panic("featcache: zstd decoder: " + err.Error())
	}
	return enc, dec
}

// Get returns a copy of the features cached for key k and view in dtype T, first from memory, then
// from disk (a disk hit is kept in memory). A missing, unreadable or corrupt entry is a miss: a
// corrupt file is removed, so the next Put rewrites it. An invalid view name is a miss.
func Get[T Float](c *Cache, k Key, view string) ([]T, bool) { return get[T](c, k, view, -1) }

// get is Get for values of want elements (any length when want < 0): another length is a miss.
func get[T Float](c *Cache, k Key, view string, want int) ([]T, bool) {
	if c == nil || checkView(view) != nil {
		return nil, false
	}
	size := sizeOf[T]()
	raw, ok := c.lookup(entryID{key: k, view: view, dtype: dtype(size)}, want*size)
	if !ok {
		return nil, false
	}
	out := make([]T, len(raw)/size)
	copy(bytesOf(out), raw)
	return out, true
}

// GetInto copies the features cached for key k and view in dtype T into dst when they hold len(dst)
// elements, and reports whether they did; on a miss dst is left as it was. A memory hit allocates nothing.
func GetInto[T Float](c *Cache, k Key, view string, dst []T) bool {
	if c == nil || checkView(view) != nil {
		return false
	}
	raw, ok := c.lookup(entryID{key: k, view: view, dtype: dtype(sizeOf[T]())}, len(dst)*sizeOf[T]())
	if ok {
		copy(bytesOf(dst), raw)
	}
	return ok
}

// Put stores a copy of v as the features of key k and view in dtype T: in memory, and on disk when
// the cache has a Dir. The memory tier holds the value even when the disk write fails; the error
// (wrapping ErrView, ErrTooLarge or the file system's error) is worth a log line, not a stopped run.
func Put[T Float](c *Cache, k Key, view string, v []T) error {
	if c == nil {
		return nil
	}
	if err := checkView(view); err != nil {
		return fmt.Errorf("featcache: put %s/%s: %w", k, view, err)
	}
	if n := len(v) * sizeOf[T](); n > MaxValueBytes {
		return fmt.Errorf("featcache: put %s/%s: %w: %d bytes, the limit is %d", k, view, ErrTooLarge, n, MaxValueBytes)
	}
	raw := append([]byte{}, bytesOf(v)...)
	id := entryID{key: k, view: view, dtype: dtype(sizeOf[T]())}
	c.mu.Lock()
	c.st.Puts++
	c.st.Evictions += int64(c.mem.add(id, raw))
	c.mu.Unlock()
	if c.dir == "" {
		return nil
	}
	return c.writeFile(id, raw)
}

// GetOrCompute returns the cached features of k and view when they hold want elements (any number
// when want < 0), and otherwise runs compute, stores its result and returns it. A cached value of
// another length (a fingerprint that left out a shape setting) is a miss and is overwritten. The
// error is Put's: the features returned are valid even when it is not nil.
//
//	f, err := featcache.GetOrCompute(c, key, featcache.ViewLR, n*Cv, func() []T { return tower(lr) })
func GetOrCompute[T Float](c *Cache, k Key, view string, want int, compute func() []T) ([]T, error) {
	if f, ok := get[T](c, k, view, want); ok {
		return f, nil
	}
	f := compute()
	return f, Put(c, k, view, f)
}

// Get is Get[float32] as a method.
func (c *Cache) Get(k Key, view string) ([]float32, bool) { return Get[float32](c, k, view) }

// Put is Put[float32] as a method.
func (c *Cache) Put(k Key, view string, v []float32) error { return Put(c, k, view, v) }

// GetFloat64 is Get[float64] as a method.
func (c *Cache) GetFloat64(k Key, view string) ([]float64, bool) { return Get[float64](c, k, view) }

// PutFloat64 is Put[float64] as a method.
func (c *Cache) PutFloat64(k Key, view string, v []float64) error { return Put(c, k, view, v) }

// fits reports whether raw is a value of wantBytes bytes (of any size when wantBytes < 0).
func fits(raw []byte, wantBytes int) bool {
	return raw != nil && (wantBytes < 0 || len(raw) == wantBytes)
}

// lookup finds the payload of id in memory, then on disk, and counts the hit or miss. A payload of
// another size than wantBytes (when wantBytes >= 0) is a miss.
func (c *Cache) lookup(id entryID, wantBytes int) ([]byte, bool) {
	c.mu.Lock()
	if raw, ok := c.mem.get(id); ok && fits(raw, wantBytes) {
		c.st.Hits++
		c.mu.Unlock()
		return raw, true
	}
	c.mu.Unlock()
	var raw []byte
	if c.dir != "" {
		raw = c.readFile(id, wantBytes)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !fits(raw, wantBytes) {
		c.st.Misses++
		return nil, false
	}
	c.st.Hits++
	c.st.DiskHits++
	c.st.Evictions += int64(c.mem.add(id, raw))
	return raw, true
}
