package featcache

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOversizeFileIsNotRead puts a sparse file larger than any file of the entry where its file should be:
// a lookup of that size, or of any size, misses without reading it. Only a lookup of any size can call it
// damaged (and remove it): to one of a given size it may be a value of another size.
func TestOversizeFileIsNotRead(t *testing.T) {
	for _, c := range []struct {
		name    string
		size    int64
		get     func(c *Cache, k Key) bool
		removed bool
	}{
		{"GetInto 4 values", 64 << 20, func(c *Cache, k Key) bool { return GetInto(c, k, ViewLR, make([]float32, 4)) }, false},
		{"Get any size", maxFileSize(-1) + 1, func(c *Cache, k Key) bool { _, ok := Get[float32](c, k, ViewLR); return ok }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cache, k := newCache(t, dir, -1), keyOf(1)
			p := filePath[float32](dir, k, ViewLR)
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.WriteFile(p, []byte(magic), 0o644))
			must(t, os.Truncate(p, c.size))
			var hit bool
			if n := allocated(func() { hit = c.get(cache, k) }); hit || n > 1<<20 {
				t.Errorf("got hit %v, %d bytes allocated; want a miss, under 1 MiB", hit, n)
			}
			if _, err := os.Stat(p); (err != nil) != c.removed {
				t.Errorf("stat after the miss: %v; want removed %v", err, c.removed)
			}
		})
	}
}
