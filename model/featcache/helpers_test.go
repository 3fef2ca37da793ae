package featcache

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// normals returns n standard-normal values from seed, like the residual stream of a ViT.
func normals[T Float](n int, seed uint64) []T {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]T, n)
	for i := range out {
		out[i] = T(r.NormFloat64())
	}
	return out
}

// keyOf returns a distinct key for small test indices.
func keyOf(i int) Key { return PixelKey([]float32{float32(i)}) }

// newCache opens a cache over dir (or memory when dir is "") with fingerprint "fp" and fails the
// test on error.
func newCache(t testing.TB, dir string, maxMem int64) *Cache {
	t.Helper()
	fp := ""
	if dir != "" {
		fp = "fp"
	}
	c, err := New(Options{Dir: dir, Fingerprint: fp, MaxMemoryBytes: maxMem})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// mustPut stores v and fails the test on error.
func mustPut[T Float](t testing.TB, c *Cache, k Key, view string, v []T) {
	t.Helper()
	if err := Put(c, k, view, v); err != nil {
		t.Fatalf("Put %s/%s: %v", k, view, err)
	}
}

// wantGet checks that Get returns exactly want.
func wantGet[T Float](t testing.TB, c *Cache, k Key, view string, want []T) {
	t.Helper()
	got, ok := Get[T](c, k, view)
	if !ok {
		t.Fatalf("Get %s/%s: miss, want a hit", k, view)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Get %s/%s: got %d values differing from the %d put", k, view, len(got), len(want))
	}
}

// wantMiss checks that Get misses.
func wantMiss[T Float](t testing.TB, c *Cache, k Key, view string) {
	t.Helper()
	if got, ok := Get[T](c, k, view); ok {
		t.Fatalf("Get %s/%s: got a hit of %d values, want a miss", k, view, len(got))
	}
}

// filePath is where a cache over dir with fingerprint "fp" keeps k/view in dtype T.
func filePath[T Float](dir string, k Key, view string) string {
	c := &Cache{dir: filepath.Join(dir, "fp")}
	return c.path(entryID{key: k, view: view, dtype: dtype(sizeOf[T]())})
}

// putUint64 writes x little-endian at b.
func putUint64(b []byte, x uint64) {
	for i := range 8 {
		b[i] = byte(x >> (8 * i))
	}
}

// reseal recomputes the checksum of file after a deliberate edit.
func reseal(file []byte, fp string, id entryID) {
	end := len(file) - trailerSize
	sum := crc32.Update(crc32.Checksum(identity(fp, id), castagnoli), castagnoli, file[:end])
	binary.LittleEndian.PutUint32(file[end:], sum)
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// allocated runs fn and returns the bytes it allocated.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
