package gpu

import "testing"

// TestStagingRing: uploads take the staging bytes front to back, aligned and never overlapping; the ring
// starts over only with a drain, and uploads too large for it, or empty, do not pass through it.
func TestStagingRing(t *testing.T) {
	const size = 4096
	r := stagingRing{size: size}
	type span struct{ lo, hi int }
	var live []span // what was written since the last drain
	for i, n := range []int{1, 300, 256, 1024, 1000, 1023, 1024, 5, 700, 1024, 1024, 1024, 1024, 17} {
		off, drain, ok := r.reserve(n)
		if !ok {
			t.Fatalf("upload %d of %d bytes refused", i, n)
		}
		if drain {
			live = nil
		}
		if off%stagingAlign != 0 || off+n > size {
			t.Fatalf("upload %d of %d bytes at %d: unaligned or past the end", i, n, off)
		}
		for _, s := range live {
			if off < s.hi && s.lo < off+n {
				t.Fatalf("upload %d [%d, %d) overlaps [%d, %d) without a drain", i, off, off+n, s.lo, s.hi)
			}
		}
		live = append(live, span{off, off + n})
	}
	for _, n := range []int{0, size/4 + 1, 10 * size} {
		if _, _, ok := r.reserve(n); ok {
			t.Errorf("an upload of %d bytes passes through a ring of %d", n, size)
		}
	}
}
