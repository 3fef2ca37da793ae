package ops

import (
	"math"
	"math/bits"
	"sync"
	"unsafe"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Arena lends the buffers of one graph run (outputs and scratch of the operations, the frozen tower's
// activations) and takes them all back at once when the run is over, so that the next run of a training
// loop finds its memory waiting instead of allocating ~the whole step again. A nil *Arena allocates
// plainly, which is what every caller that keeps its values past the run (inference, checks) wants.
//
// Buffers are kept by element type and size class (eight classes per power of two, so a batch whose
// sequence length moves a little reuses the same buffers); a buffer idle for more than maxIdle releases
// goes back to the garbage collector. An Arena is safe for concurrent use.
type Arena struct {
	mu     sync.Mutex
	free   map[arenaSlot][]idleBuf
	lent   []lentBuf       // lent since the last Release (empty slots: freed since, Free)
	at     map[uintptr]int // the lent buffers' positions in lent, by address
	runs   int             // releases so far: the age of idle buffers
	stats  ArenaStats
	child  *Arena // Child's, made on first use
	poison bool   // PoisonFrees: Free fills what it takes back with NaN
}

// ArenaStats count an arena's traffic since it was made.
type ArenaStats struct {
	Lent  int64 // bytes handed out
	Fresh int64 // bytes of those that had to be allocated (the rest were reused)
	Held  int64 // bytes the arena holds now, lent and idle (Scratch buffers out are not counted)
}

type arenaSlot struct {
	dtype tensor.Dtype
	cap   int // size class, in elements
}

func (s arenaSlot) bytes() int64 { return int64(s.cap) * int64(s.dtype.Size()) }

type lentBuf struct {
	slot arenaSlot
	buf  any // []T at full capacity
}

type idleBuf struct {
	buf  any
	used int // the release after which it was last idle
}

// maxIdle is how many releases an unused buffer survives: enough that the buffers of a step's rarer shapes
// (a micro-batch without images, the odd peak of temporaries out at once on both cores) wait for their next
// use (at 4 the bench still allocated 4 MiB per step, at 16 2 MiB), few enough that a shape seen once is
// not kept for good.
const maxIdle = 16

// NewArena returns an empty arena.
func NewArena() *Arena { return &Arena{free: map[arenaSlot][]idleBuf{}, at: map[uintptr]int{}} }

// Buffer returns a zeroed slice of n elements lent by a until its next Release, or a fresh one when a is
// nil.
func Buffer[T Float](a *Arena, n int) []T { return lend[T](a, n, true) }

// lend is Buffer, leaving a reused buffer as it was unless zero.
func lend[T Float](a *Arena, n int, zero bool) []T {
	buf := get[T](a, n, zero)
	if a != nil && n > 0 {
		a.mu.Lock()
		a.at[uintptr(unsafe.Pointer(unsafe.SliceData(buf)))] = len(a.lent)
		a.lent = append(a.lent, lentBuf{arenaSlot{dtypeOf[T](), cap(buf)}, buf[:cap(buf)]})
		a.mu.Unlock()
	}
	return buf
}

// Scratch returns a zeroed slice of n elements that the caller owns: it may give it back with Recycle as
// soon as it is done (a kernel's temporary), or drop it. A nil a allocates plainly.
func Scratch[T Float](a *Arena, n int) []T { return get[T](a, n, true) }

// get takes a buffer of n elements from a, or makes one; a reused one is cleared when zero.
func get[T Float](a *Arena, n int, zero bool) []T {
	if a == nil || n == 0 {
		return make([]T, n)
	}
	slot := arenaSlot{dtypeOf[T](), SizeClass(n)}
	a.mu.Lock()
	b, ok := a.take(slot)
	if !ok {
		a.stats.Fresh += slot.bytes()
	}
	a.stats.Lent += int64(n) * int64(slot.dtype.Size())
	a.mu.Unlock()
	if !ok {
		return make([]T, n, slot.cap)
	}
	buf := b.([]T)[:n]
	if zero {
		clear(buf)
	}
	return buf
}

// Recycle gives Scratch buffers back to a for the next caller; nothing may use them after. A nil a, or a
// buffer that a did not make, is ignored.
func Recycle[T Float](a *Arena, bufs ...[]T) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range bufs {
		if c := cap(b); c > 0 && SizeClass(c) == c {
			slot := arenaSlot{dtypeOf[T](), c}
			a.free[slot] = append(a.free[slot], idleBuf{b[:c], a.runs})
		}
	}
}

// take pops an idle buffer of slot; a.mu is held.
func (a *Arena) take(slot arenaSlot) (any, bool) {
	l := a.free[slot]
	if len(l) == 0 {
		return nil, false
	}
	b := l[len(l)-1]
	a.free[slot] = l[:len(l)-1]
	return b.buf, true
}

// Release takes back every buffer lent since the last Release: nothing may use them after it. Buffers
// idle for more than maxIdle releases are dropped.
func (a *Arena) Release() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runs++
	for _, b := range a.lent {
		if b.buf != nil {
			a.free[b.slot] = append(a.free[b.slot], idleBuf{b.buf, a.runs})
		}
	}
	clear(a.lent)
	a.lent = a.lent[:0]
	clear(a.at)
	for slot, l := range a.free {
		kept := l[:0]
		for _, b := range l {
			if a.runs-b.used <= maxIdle {
				kept = append(kept, b)
			}
		}
		clear(l[len(kept):])
		if len(kept) == 0 {
			delete(a.free, slot)
		} else {
			a.free[slot] = kept
		}
	}
}

// Free takes back, before the next Release, the buffer of a value that no operation reads any more
// (Releaser, PlanReleases): the next Buffer of its size class may get it. A value whose data the arena
// did not lend since the last Release is left as it is.
func (a *Arena) Free(v G.Value) {
	t, ok := v.(*tensor.Dense)
	if a == nil || !ok || t.Shape().TotalSize() == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.at[t.Uintptr()]
	if !ok {
		return
	}
	b := a.lent[i]
	delete(a.at, t.Uintptr())
	a.lent[i] = lentBuf{}
	if a.poison {
		poison(b.buf)
	}
	a.free[b.slot] = append(a.free[b.slot], idleBuf{b.buf, a.runs})
}

// FreeSaved has nothing to free: an operation's CPU arithmetic keeps its saved state in its own buffers,
// lent until Release.
func (*Arena) FreeSaved(*Saved) {}

// PoisonFrees makes Free fill each buffer it takes back with NaN, so that a value read after it was freed
// reads NaN (for tests).
func (a *Arena) PoisonFrees() {
	a.mu.Lock()
	a.poison = true
	a.mu.Unlock()
}

// Poison fills every idle buffer with NaN, so that a kernel reading memory it has not written since it
// took a buffer sees NaN instead of a plausible leftover (for tests).
func (a *Arena) Poison() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.free {
		for _, b := range l {
			poison(b.buf)
		}
	}
}

// poison fills a buffer with NaN.
func poison(buf any) {
	nan := math.NaN()
	switch x := buf.(type) {
	case []float32:
		for i := range x {
			x[i] = float32(nan)
		}
	case []float64:
		for i := range x {
			x[i] = nan
		}
	}
}

// Child returns an arena that a's owner releases on its own schedule, kept with a (the same one on every
// call): the scratch of work done several times within one run of a graph, such as a recomputed layer's.
// Its traffic counts in a's Stats. A nil a gives a new arena each time.
func (a *Arena) Child() *Arena {
	if a == nil {
		return NewArena()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.child == nil {
		a.child = NewArena()
	}
	return a.child
}

// Stats returns the arena's counters, its Child's included (zero for a nil arena).
func (a *Arena) Stats() ArenaStats {
	if a == nil {
		return ArenaStats{}
	}
	a.mu.Lock()
	child := a.child
	a.mu.Unlock()
	c := child.Stats()
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.stats
	st.Lent, st.Fresh, st.Held = st.Lent+c.Lent, st.Fresh+c.Fresh, st.Held+c.Held
	for _, b := range a.lent {
		if b.buf != nil {
			st.Held += b.slot.bytes()
		}
	}
	for slot, l := range a.free {
		st.Held += int64(len(l)) * slot.bytes()
	}
	return st
}

// SizeClass rounds n up to the next of eight steps per power of two (at most 12.5% more), exact below 16:
// the arena's classes of buffers, and the GPU's classes of its cached blocks (package gpu).
func SizeClass(n int) int {
	if n < 16 {
		return n
	}
	step := 1 << (bits.Len(uint(n)) - 4)
	return (n + step - 1) / step * step
}

// arenas maps a graph to the arena its operations allocate from (Attach); operations look it up once,
// when they are added to the graph.
var arenas sync.Map

// Attach makes the operations added to g from now on allocate from a, until Detach.
func Attach(g *G.ExprGraph, a *Arena) {
	if a != nil {
		arenas.Store(g, a)
	}
}

// Detach forgets g's arena; operations already built keep it.
func Detach(g *G.ExprGraph) { arenas.Delete(g) }

// arenaOf returns the arena attached to g, or nil.
func arenaOf(g *G.ExprGraph) *Arena {
	if a, ok := arenas.Load(g); ok {
		return a.(*Arena)
	}
	return nil
}

// alloc returns a zeroed tensor of T and the given shape lent by m (plain when m is nil), and its data.
func alloc[T Float](m *Arena, shape ...int) (*tensor.Dense, []T) { return allocAs[T](m, true, shape) }

// allocFull is alloc for an output that its kernel writes in full: a reused buffer is not cleared first.
func allocFull[T Float](m *Arena, shape ...int) (*tensor.Dense, []T) {
	return allocAs[T](m, false, shape)
}

func allocAs[T Float](m *Arena, zero bool, shape []int) (*tensor.Dense, []T) {
	n := 1
	for _, s := range shape {
		n *= s
	}
	if m == nil {
		d := newDense(dtypeOf[T](), shape...)
		return d, d.Data().([]T)
	}
	buf := lend[T](m, n, zero)
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(buf)), buf
}
