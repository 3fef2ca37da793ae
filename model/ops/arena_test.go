package ops

import "testing"

func TestSizeClass(t *testing.T) {
	for _, tt := range []struct{ n, want int }{
		{0, 0}, {1, 1}, {15, 15}, {16, 16}, {17, 18}, {31, 32}, {100, 104}, {1000, 1024}, {1025, 1152}, {4096, 4096},
	} {
		if got := SizeClass(tt.n); got != tt.want {
			t.Errorf("SizeClass(%d) = %d; want %d", tt.n, got, tt.want)
		}
	}
	for n := 1; n < 1<<16; n += 7 {
		c := SizeClass(n)
		if c < n || float64(c) > 1.125*float64(n)+1 || SizeClass(c) != c {
			t.Fatalf("SizeClass(%d) = %d: want a fixed point in [n, 1.125·n]", n, c)
		}
	}
}

// TestArenaChild: a Child is the same arena on every call, released on its own, and counted in its
// parent's Stats.
func TestArenaChild(t *testing.T) {
	a := NewArena()
	c := a.Child()
	if a.Child() != c || (*Arena)(nil).Child() == nil {
		t.Fatal("Child is not kept, or a nil arena has none")
	}
	b := Buffer[float32](c, 1000)
	if st := a.Stats(); st.Held < 4*int64(len(b)) || st.Lent < 4*int64(len(b)) {
		t.Errorf("parent stats %+v do not count the child's %d values", st, len(b))
	}
	a.Release() // the parent's: the child's buffer stays lent
	other := Buffer[float32](c, 1000)
	if &other[0] == &b[0] {
		t.Error("the parent's Release took back the child's buffer")
	}
	c.Release()
	if again := Buffer[float32](c, 1000); &again[0] != &b[0] && &again[0] != &other[0] {
		t.Error("the child's Release did not take its buffers back")
	}
}

// TestArenaLifecycle follows buffers through lending, release, reuse and dropping.
func TestArenaLifecycle(t *testing.T) {
	a := NewArena()
	b := Buffer[float32](a, 100)
	if len(b) != 100 || cap(b) != SizeClass(100) {
		t.Fatalf("Buffer(100): len %d cap %d", len(b), cap(b))
	}
	for i := range b {
		b[i] = 1
	}
	again := Buffer[float32](a, 100)
	if &again[0] == &b[0] {
		t.Fatal("a lent buffer was lent again before Release")
	}
	a.Release()
	st := a.Stats()
	c := Buffer[float32](a, 98) // same size class
	if &c[0] != &b[0] && &c[0] != &again[0] {
		t.Error("a released buffer of the same class was not reused")
	}
	if a.Stats().Fresh != st.Fresh {
		t.Error("reusing a buffer counted as a fresh allocation")
	}
	for i, v := range c {
		if v != 0 {
			t.Fatalf("reused buffer not zeroed: [%d] = %v", i, v)
		}
	}
	if d := Buffer[float64](a, 100); len(d) != 100 || a.Stats().Fresh == st.Fresh {
		t.Error("a float64 buffer came from the float32 pool")
	}
	s := Scratch[float32](a, 1000)
	Recycle(a, s)
	if s2 := Scratch[float32](a, 1000); &s2[0] != &s[0] {
		t.Error("a recycled scratch buffer was not reused")
	}
	Recycle(a, make([]float32, 1000, 1001)) // not an arena size class: ignored
	for range maxIdle + 2 {
		a.Release()
	}
	if held := a.Stats().Held; held != 0 {
		t.Errorf("after %d idle releases the arena holds %d bytes; want 0", maxIdle+2, held)
	}
}

func TestArenaNil(t *testing.T) {
	var a *Arena
	if b := Buffer[float64](a, 5); len(b) != 5 {
		t.Errorf("nil arena Buffer: len %d", len(b))
	}
	Recycle(a, Scratch[float32](a, 3))
	a.Release()
	if a.Stats() != (ArenaStats{}) {
		t.Error("nil arena has statistics")
	}
}
