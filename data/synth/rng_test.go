package synth

import "testing"

func TestRNGRanges(t *testing.T) {
	cases := []struct{ lo, hi int }{{0, 0}, {0, 1}, {-8, 8}, {3, 9}, {5, 4}}
	for _, c := range cases {
		r := newRNG(1, uint64(c.lo+100))
		seen := map[int]bool{}
		for range 2000 {
			v := r.between(c.lo, c.hi)
			if v < c.lo || (c.hi >= c.lo && v > c.hi) || (c.hi < c.lo && v != c.lo) {
				t.Fatalf("between(%d, %d) = %d; want a value in range (lo when hi < lo)", c.lo, c.hi, v)
			}
			seen[v] = true
		}
		if want := max(1, c.hi-c.lo+1); len(seen) != want {
			t.Errorf("between(%d, %d) took %d distinct values in 2000 draws; want %d", c.lo, c.hi, len(seen), want)
		}
	}
}

func TestRNGStreams(t *testing.T) {
	first := func(seed uint64, keys ...uint64) uint64 { return newRNG(seed, keys...).next() }
	streams := map[string]uint64{
		"seed 1":           first(1),
		"seed 2":           first(2),
		"seed 1, key 0":    first(1, 0),
		"seed 1, key 1":    first(1, 1),
		"seed 1, keys 1 0": first(1, 1, 0),
		"seed 1, keys 0 1": first(1, 0, 1),
	}
	owner := map[uint64]string{}
	for name, v := range streams {
		if prev, ok := owner[v]; ok {
			t.Errorf("streams %q and %q start with the same value %#x; want distinct streams", prev, name, v)
		}
		owner[v] = name
	}
	if a, b := first(7, 3, 9), first(7, 3, 9); a != b {
		t.Errorf("the same seed and keys gave %#x and %#x; want equal", a, b)
	}
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		o := DefaultOptions()
		o.Dir, o.N, o.ValN, o.TestN = b.TempDir(), 200, 0, 0
		if _, err := Generate(o); err != nil {
			b.Fatal(err)
		}
	}
}
