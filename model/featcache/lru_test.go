package featcache

import "testing"

func TestLRUEvictsLeastRecentlyUsed(t *testing.T) {
	id := func(i int) entryID { return entryID{key: keyOf(i), view: ViewLR, dtype: 4} }
	l := newLRU(30)
	l.add(id(1), make([]byte, 10))
	l.add(id(2), make([]byte, 10))
	l.add(id(3), make([]byte, 10))
	l.get(id(1)) // 2 is now the least recently used
	if got := l.add(id(4), make([]byte, 10)); got != 1 {
		t.Errorf("add 4: evicted %d; want 1", got)
	}
	for i, want := range []bool{1: true, 2: false, 3: true, 4: true} {
		if i == 0 {
			continue
		}
		if _, got := l.get(id(i)); got != want {
			t.Errorf("after eviction, get %d = %v; want %v", i, got, want)
		}
	}
	if l.bytes != 30 {
		t.Errorf("bytes = %d; want 30", l.bytes)
	}
}

func TestLRUReplaceAndOversize(t *testing.T) {
	a := entryID{key: keyOf(1), view: ViewHR, dtype: 8}
	l := newLRU(16)
	l.add(a, make([]byte, 8))
	l.add(a, make([]byte, 12))
	if l.bytes != 12 || len(l.items) != 1 {
		t.Errorf("after replace: bytes %d, items %d; want 12, 1", l.bytes, len(l.items))
	}
	l.add(a, make([]byte, 17)) // larger than the bound: not kept, and the old value is gone
	if _, ok := l.get(a); ok || l.bytes != 0 {
		t.Errorf("after oversize add: present %v, bytes %d; want false, 0", ok, l.bytes)
	}
}
