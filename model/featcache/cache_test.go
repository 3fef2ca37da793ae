package featcache

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/flextrain/flextrain/internal/atomicfile"
)

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		disk   bool
		maxMem int64
	}{
		{"memory", false, 0},
		{"disk only", true, -1},
		{"memory and disk", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := ""
			if tc.disk {
				dir = t.TempDir()
			}
			c := newCache(t, dir, tc.maxMem)
			lr32, hr32 := normals[float32](64*8, 1), normals[float32](9*64*8, 2)
			lr64 := normals[float64](64*8, 3)
			k := keyOf(1)
			mustPut(t, c, k, ViewLR, lr32)
			mustPut(t, c, k, ViewHR, hr32)
			mustPut(t, c, k, ViewLR, lr64)
			wantGet(t, c, k, ViewLR, lr32)
			wantGet(t, c, k, ViewHR, hr32)
			wantGet(t, c, k, ViewLR, lr64)
			wantMiss[float64](t, c, k, ViewHR) // put as float32 only
			wantMiss[float32](t, c, keyOf(2), ViewLR)
		})
	}
}

func TestMethodsMatchGenerics(t *testing.T) {
	c := newCache(t, t.TempDir(), 0)
	k := keyOf(1)
	v32, v64 := normals[float32](100, 1), normals[float64](100, 2)
	if err := c.Put(k, ViewLR, v32); err != nil {
		t.Fatal(err)
	}
	if err := c.PutFloat64(k, ViewLR, v64); err != nil {
		t.Fatal(err)
	}
	if got, ok := c.Get(k, ViewLR); !ok || got[7] != v32[7] {
		t.Errorf("Get: ok %v; want the float32 value", ok)
	}
	if got, ok := c.GetFloat64(k, ViewLR); !ok || got[7] != v64[7] {
		t.Errorf("GetFloat64: ok %v; want the float64 value", ok)
	}
}

// TestNoAliasing: neither the slice given to Put nor the one returned by Get shares memory with the
// cache.
func TestNoAliasing(t *testing.T) {
	c := newCache(t, "", 0)
	k, v := keyOf(1), normals[float32](16, 1)
	want := append([]float32{}, v...)
	mustPut(t, c, k, ViewLR, v)
	v[0] = 99
	got, _ := Get[float32](c, k, ViewLR)
	got[1] = 99
	wantGet(t, c, k, ViewLR, want)
}

func TestMemoryBoundEvicts(t *testing.T) {
	const vals = 256 // 1 KiB of float32 per entry
	c := newCache(t, "", 3*vals*4)
	for i := range 5 {
		mustPut(t, c, keyOf(i), ViewLR, normals[float32](vals, uint64(i)))
	}
	s := c.Stats()
	if s.BytesInMemory != 3*vals*4 || s.Entries != 3 || s.Evictions != 2 {
		t.Errorf("stats: %d bytes, %d entries, %d evictions; want %d, 3, 2", s.BytesInMemory, s.Entries, s.Evictions, 3*vals*4)
	}
	wantMiss[float32](t, c, keyOf(0), ViewLR)
	wantMiss[float32](t, c, keyOf(1), ViewLR)
	wantGet(t, c, keyOf(4), ViewLR, normals[float32](vals, 4))
}

// TestEvictedValueComesFromDisk: a value evicted from memory is still a hit, read from disk.
func TestEvictedValueComesFromDisk(t *testing.T) {
	c := newCache(t, t.TempDir(), 1024)
	for i := range 3 {
		mustPut(t, c, keyOf(i), ViewLR, normals[float32](256, uint64(i)))
	}
	wantGet(t, c, keyOf(0), ViewLR, normals[float32](256, 0))
	if s := c.Stats(); s.DiskHits != 1 || s.Hits != 1 {
		t.Errorf("stats: %d hits, %d from disk; want 1, 1", s.Hits, s.DiskHits)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	first := newCache(t, dir, 0)
	lr, hr := normals[float64](300, 1), normals[float32](900, 2)
	mustPut(t, first, keyOf(1), ViewLR, lr)
	mustPut(t, first, keyOf(1), ViewHR, hr)
	second := newCache(t, dir, 0)
	if got, want := second.Stats().BytesOnDisk, first.Stats().BytesOnDisk; got != want || got == 0 {
		t.Errorf("second cache BytesOnDisk = %d; want the first's %d (> 0)", got, want)
	}
	wantGet(t, second, keyOf(1), ViewLR, lr)
	wantGet(t, second, keyOf(1), ViewHR, hr)
	if s := second.Stats(); s.DiskHits != 2 {
		t.Errorf("second cache disk hits = %d; want 2", s.DiskHits)
	}
}

func TestFingerprintSeparates(t *testing.T) {
	dir := t.TempDir()
	a, err := New(Options{Dir: dir, Fingerprint: Fingerprint([]byte("weights A"))})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Dir: dir, Fingerprint: Fingerprint([]byte("weights B"))})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, a, keyOf(1), ViewLR, normals[float32](10, 1))
	wantMiss[float32](t, b, keyOf(1), ViewLR)
}

// TestMisplacedFileIsCorrupt: a valid file copied under another key or fingerprint fails its
// checksum, so it can never be served as that key's features.
func TestMisplacedFileIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, dir, -1)
	mustPut(t, c, keyOf(1), ViewLR, normals[float32](10, 1))
	b, err := os.ReadFile(filePath[float32](dir, keyOf(1), ViewLR))
	if err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{
		filePath[float32](dir, keyOf(2), ViewLR),
		filePath[float32](dir, keyOf(1), ViewHR),
		filepath.Join(dir, "other", filepath.Base(filepath.Dir(filePath[float32](dir, keyOf(1), ViewLR))),
			filepath.Base(filePath[float32](dir, keyOf(1), ViewLR))),
	} {
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	other, err := New(Options{Dir: dir, Fingerprint: "other", MaxMemoryBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	wantMiss[float32](t, c, keyOf(2), ViewLR)
	wantMiss[float32](t, c, keyOf(1), ViewHR)
	wantMiss[float32](t, other, keyOf(1), ViewLR)
	if got := c.Stats().Corrupt + other.Stats().Corrupt; got != 3 {
		t.Errorf("corrupt files removed = %d; want 3", got)
	}
}

func TestDamagedFileIsMissAndRemoved(t *testing.T) {
	for _, tc := range []struct {
		name string
		mess func(b []byte) []byte
	}{
		{"header byte", func(b []byte) []byte { b[20] ^= 1; return b }},
		{"body byte", func(b []byte) []byte { b[headerSize+len(b)/2] ^= 0x80; return b }},
		{"checksum byte", func(b []byte) []byte { b[len(b)-1]++; return b }},
		{"truncated body", func(b []byte) []byte { return b[:len(b)/2] }},
		{"truncated header", func(b []byte) []byte { return b[:10] }},
		{"empty", func(b []byte) []byte { return nil }},
		{"trailing byte", func(b []byte) []byte { return append(b, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := newCache(t, dir, -1)
			k := keyOf(1)
			mustPut(t, c, k, ViewHR, normals[float32](1000, 1))
			p := filePath[float32](dir, k, ViewHR)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.mess(b), 0o644); err != nil {
				t.Fatal(err)
			}
			wantMiss[float32](t, c, k, ViewHR)
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("damaged file: stat err %v; want it removed", err)
			}
			if s := c.Stats(); s.Corrupt != 1 || s.Misses != 1 {
				t.Errorf("stats: %d corrupt, %d misses; want 1, 1", s.Corrupt, s.Misses)
			}
		})
	}
}

// TestOtherVersionIsKept: a file of another format version is a miss, but it is another build's to
// read, not garbage: it stays.
func TestOtherVersionIsKept(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, dir, -1)
	mustPut(t, c, keyOf(1), ViewLR, normals[float32](10, 1))
	p := filePath[float32](dir, keyOf(1), ViewLR)
	b, _ := os.ReadFile(p)
	b[8] = FormatVersion + 1
	os.WriteFile(p, b, 0o644)
	wantMiss[float32](t, c, keyOf(1), ViewLR)
	if _, err := os.Stat(p); err != nil {
		t.Errorf("other-version file: stat err %v; want it kept", err)
	}
}

func TestWritesLeaveNoTempFiles(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, dir, 0)
	for i := range 4 {
		mustPut(t, c, keyOf(i%2), ViewLR, normals[float32](50, uint64(i)))
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, filepath.Base(p))
		}
		return nil
	})
	if len(files) != 2 {
		t.Errorf("files after 4 puts of 2 keys: %v; want 2 .zst files", files)
	}
	if got, want := c.Stats().BytesOnDisk, newCache(t, dir, 0).Stats().BytesOnDisk; got != want {
		t.Errorf("BytesOnDisk after overwrites = %d; a fresh scan finds %d", got, want)
	}
}

func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "fp", "ab")
	os.MkdirAll(sub, 0o755)
	stale, fresh := atomicfile.TempName(filepath.Join(sub, "x.zst")), atomicfile.TempName(filepath.Join(sub, "y.zst"))
	os.WriteFile(stale, []byte("x"), 0o644)
	os.WriteFile(fresh, []byte("y"), 0o644)
	old := time.Now().Add(-2 * staleAfter)
	os.Chtimes(stale, old, old)
	newCache(t, dir, 0)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file: stat err %v; want removed", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file (another writer's): stat err %v; want kept", err)
	}
}

func TestConcurrentGetPut(t *testing.T) {
	c := newCache(t, t.TempDir(), 8*1024) // small: evictions and disk reads race with puts
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				k := keyOf((g + i) % 6)
				want := normals[float32](128, uint64((g+i)%6))
				if got, ok := Get[float32](c, k, ViewHR); ok && got[5] != want[5] {
					t.Errorf("goroutine %d: key %d: wrong features", g, (g+i)%6)
					return
				}
				if err := Put(c, k, ViewHR, want); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if s := c.Stats(); s.Puts != 160 || s.Hits+s.Misses != 160 || s.Corrupt != 0 {
		t.Errorf("stats: %d puts, %d gets, %d corrupt; want 160, 160, 0", s.Puts, s.Hits+s.Misses, s.Corrupt)
	}
}

func TestStatsHitRate(t *testing.T) {
	c := newCache(t, "", 0)
	if got := c.Stats().HitRate(); got != 0 {
		t.Errorf("HitRate before any Get = %v; want 0", got)
	}
	mustPut(t, c, keyOf(1), ViewLR, []float32{1})
	Get[float32](c, keyOf(1), ViewLR)
	Get[float32](c, keyOf(1), ViewLR)
	Get[float32](c, keyOf(1), ViewLR)
	Get[float32](c, keyOf(2), ViewLR)
	s := c.Stats()
	if s.Hits != 3 || s.Misses != 1 || s.Puts != 1 || s.HitRate() != 0.75 {
		t.Errorf("stats: %d hits, %d misses, %d puts, rate %v; want 3, 1, 1, 0.75", s.Hits, s.Misses, s.Puts, s.HitRate())
	}
}

func TestGetOrCompute(t *testing.T) {
	c := newCache(t, t.TempDir(), 0)
	calls := 0
	tower := func() []float64 { calls++; return normals[float64](12, 7) }
	for i := range 3 {
		f, err := GetOrCompute(c, keyOf(1), ViewLR, 12, tower)
		if err != nil || len(f) != 12 || f[3] != normals[float64](12, 7)[3] {
			t.Fatalf("call %d: %d values, err %v; want the tower's 12", i, len(f), err)
		}
	}
	if calls != 1 {
		t.Errorf("tower ran %d times for 3 calls; want 1", calls)
	}
	if _, err := GetOrCompute(c, keyOf(1), ViewLR, 13, tower); err != nil || calls != 2 {
		t.Errorf("wrong cached length: tower ran %d times, err %v; want 2, nil", calls, err)
	}
}

func TestNilCacheIsDisabled(t *testing.T) {
	var c *Cache
	if err := c.Put(keyOf(1), ViewLR, []float32{1}); err != nil {
		t.Errorf("nil Put: %v; want nil", err)
	}
	wantMiss[float32](t, c, keyOf(1), ViewLR)
	if f, err := GetOrCompute(c, keyOf(1), ViewLR, 1, func() []float32 { return []float32{2} }); err != nil || f[0] != 2 {
		t.Errorf("nil GetOrCompute: %v, %v; want [2], nil", f, err)
	}
	if s := c.Stats(); s != (Stats{}) {
		t.Errorf("nil Stats = %+v; want zero", s)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want error
	}{
		{"dir without fingerprint", Options{Dir: "x"}, ErrOptions},
		{"fingerprint with slash", Options{Dir: "x", Fingerprint: "a/b"}, ErrOptions},
		{"fingerprint dot-dot", Options{Dir: "x", Fingerprint: ".."}, ErrOptions},
		{"fingerprint too long", Options{Fingerprint: string(make([]byte, 129))}, ErrOptions},
	} {
		if _, err := New(tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("New(%s): got %v; want %v", tc.name, err, tc.want)
		}
	}
	c := newCache(t, t.TempDir(), 0)
	for _, view := range []string{"", "LR", "../x", "a.b", "view_name_too_long"} {
		if err := Put(c, keyOf(1), view, []float32{1}); !errors.Is(err, ErrView) {
			t.Errorf("Put view %q: got %v; want ErrView", view, err)
		}
		wantMiss[float32](t, c, keyOf(1), view)
	}
}

func TestNewFailsOnUnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := New(Options{Dir: file, Fingerprint: "fp"}); err == nil {
		t.Errorf("New over a regular file: got nil error; want one")
	}
}

// TestDiskWriteFailureKeepsMemory: when the file cannot be written, Put says so, and the value is
// still served from memory.
func TestDiskWriteFailureKeepsMemory(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, dir, 0)
	k := keyOf(1)
	p := filePath[float32](dir, k, ViewLR)
	if err := os.WriteFile(filepath.Dir(p), nil, 0o644); err != nil { // a file where the key's directory goes
		t.Fatal(err)
	}
	v := normals[float32](10, 1)
	if err := Put(c, k, ViewLR, v); err == nil {
		t.Fatalf("Put with a blocked directory: got nil error; want one")
	}
	wantGet(t, c, k, ViewLR, v)
	if s := c.Stats(); s.DiskErrors != 1 || s.BytesOnDisk != 0 {
		t.Errorf("stats: %d disk errors, %d bytes on disk; want 1, 0", s.DiskErrors, s.BytesOnDisk)
	}
}

// TestGetInto reads a value into the caller's buffer: a hit of the right length fills it, from memory without
// allocating and from disk; a miss or another length leaves it as it was.
func TestGetInto(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, dir, 0)
	want := normals[float32](12, 3)
	if err := Put(c, keyOf(1), ViewHR, want); err != nil {
		t.Fatal(err)
	}
	fresh := newCache(t, dir, 0) // reads the file
	for _, tc := range []struct {
		name string
		c    *Cache
		k    Key
		n    int
		hit  bool
	}{
		{"memory", c, keyOf(1), 12, true},
		{"disk", fresh, keyOf(1), 12, true},
		{"other key", c, keyOf(2), 12, false},
		{"other length", c, keyOf(1), 11, false},
		{"nil cache", nil, keyOf(1), 12, false},
	} {
		dst := make([]float32, tc.n)
		dst[0] = -1
		if got := GetInto(tc.c, tc.k, ViewHR, dst); got != tc.hit {
			t.Errorf("%s: GetInto = %v; want %v", tc.name, got, tc.hit)
		}
		if tc.hit && !slices.Equal(dst, want) || !tc.hit && dst[0] != -1 {
			t.Errorf("%s: dst %v after GetInto", tc.name, dst[:3])
		}
	}
	dst, k := make([]float32, 12), keyOf(1)
	if n := testing.AllocsPerRun(10, func() { GetInto(c, k, ViewHR, dst) }); n != 0 {
		t.Errorf("a memory hit allocates %v times; want 0", n)
	}
}
