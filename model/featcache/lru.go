package featcache

import "container/list"

// dtype is an element size in bytes: 4 (float32) or 8 (float64).
type dtype uint8

// String returns the dtype's file-name suffix, "f32" or "f64".
func (d dtype) String() string {
	if d == 4 {
		return "f32"
	}
	return "f64"
}

// entryID names one cached value: the features of one image (key), one view, in one dtype.
type entryID struct {
	key   Key
	view  string
	dtype dtype
}

// lru is the memory tier: raw payloads by entryID, least recently used evicted first once their
// bytes exceed max. Stored slices are never written after insertion, so a reader may copy from one
// after releasing the Cache's lock. Not safe for concurrent use: Cache holds its lock around it.
type lru struct {
	max   int64
	bytes int64
	order *list.List // of *lruEntry, most recent at the front
	items map[entryID]*list.Element
}

type lruEntry struct {
	id  entryID
	raw []byte
}

func newLRU(max int64) *lru {
	return &lru{max: max, order: list.New(), items: map[entryID]*list.Element{}}
}

// get returns the payload of id and marks it most recently used.
func (l *lru) get(id entryID) ([]byte, bool) {
	e, ok := l.items[id]
	if !ok {
		return nil, false
	}
	l.order.MoveToFront(e)
	return e.Value.(*lruEntry).raw, true
}

// add stores raw under id (replacing any older value) and evicts from the back until the bound
// holds; it returns how many entries it evicted. A value larger than the whole bound is not kept.
func (l *lru) add(id entryID, raw []byte) (evicted int) {
	l.remove(id)
	if int64(len(raw)) > l.max {
		return 0
	}
	l.items[id] = l.order.PushFront(&lruEntry{id: id, raw: raw})
	l.bytes += int64(len(raw))
	for l.bytes > l.max {
		l.remove(l.order.Back().Value.(*lruEntry).id)
		evicted++
	}
	return evicted
}

// remove drops id if present.
func (l *lru) remove(id entryID) {
	e, ok := l.items[id]
	if !ok {
		return
	}
	l.order.Remove(e)
	delete(l.items, id)
	l.bytes -= int64(len(e.Value.(*lruEntry).raw))
}
