// Package disttest is a test double of package dist: the ranks of a world as goroutines of one test
// process, for the default build's tests of multi-rank logic (sharding, summed gradients, agreement to
// stop) without MPI. It is not a transport: nothing leaves the process, and it is as slow as it is simple.
//
// Its collectives really combine the ranks' buffers, deterministically (sums in rank order, whatever the
// order the goroutines arrive in), and they check what MPI would leave undefined: every rank must call the
// same collective with the same length and root, or each of them gets an error instead of a hang or
// garbage. Once a rank has closed or aborted, the others' collectives fail instead of waiting for it.
package disttest

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/flextrain/flextrain/dist"
)

// Local returns the n ranks of a new world, Comm i being rank i; each must be driven by its own goroutine.
func Local(n int) []dist.Comm {
	if n < 1 {
		panic(fmt.Sprintf("disttest: a world of %d ranks", n))
	}
	w := &world{n: n, calls: make([]call, n)}
	w.cond = sync.NewCond(&w.mu)
	out := make([]dist.Comm, n)
	for r := range out {
		out[r] = &Rank{w: w, rank: r}
	}
	return out
}

// call is what one rank brings to a collective.
type call struct {
	op   string
	root int
	n    int
	f32  []float32
	f64  []float64
	b    []byte
}

// world is the meeting point of the ranks: a barrier that hands every rank the calls of all.
type world struct {
	n      int
	mu     sync.Mutex
	cond   *sync.Cond
	calls  []call // this round's calls so far, by rank
	here   int    // ranks arrived in this round
	round  uint64 // rounds completed
	last   []call // the calls of the round completed last
	broken error  // why collectives fail: a rank closed or aborted
	code   int    // the exit code of the rank that aborted
	abort  bool
}

// meet waits until every rank has brought its call to this round, and returns all of them in rank order.
func (w *world) meet(rank int, c call) ([]call, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken != nil {
		return nil, w.broken
	}
	w.calls[rank] = c
	w.here++
	round := w.round
	if w.here == w.n {
		w.last = append([]call(nil), w.calls...)
		w.here, w.round = 0, w.round+1
		w.cond.Broadcast()
		return w.last, nil
	}
	for round == w.round && w.broken == nil {
		w.cond.Wait()
	}
	if round == w.round {
		return nil, w.broken
	}
	return w.last, nil // the next round cannot complete before this rank joins it
}

// breakWith makes every waiting and later collective fail with err.
func (w *world) breakWith(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken == nil {
		w.broken = err
	}
	w.cond.Broadcast()
}

// Rank is one rank of a Local world. Its Abort ends only the calling goroutine (runtime.Goexit), so that a
// test can see it with Aborted.
type Rank struct {
	w      *world
	rank   int
	closed bool
}

var _ dist.Comm = (*Rank)(nil)

// Rank is this rank's index in Local's slice.
func (r *Rank) Rank() int { return r.rank }

// Size is the n of Local.
func (r *Rank) Size() int { return r.w.n }

// LocalRank is Rank: every rank is on this machine.
func (r *Rank) LocalRank() int { return r.rank }

// collective brings c to a round and checks that every rank called the same thing; read then takes what
// it needs from the others' calls, the same on every rank, and may refuse them all with an error. A second
// round waits until every rank has read, and only then does write change this rank's buffer.
func (r *Rank) collective(c call, read func(all []call) error, write func()) error {
	if r.closed {
		return fmt.Errorf("dist: %s: closed", c.op)
	}
	all, err := r.w.meet(r.rank, c)
	if err != nil {
		return fmt.Errorf("dist: %s: %w", c.op, err)
	}
	for k, o := range all {
		if o.op != c.op || o.n != c.n || o.root != c.root {
			return fmt.Errorf("dist: %s: rank %d called %s of %d (root %d) while rank %d called %s of %d (root %d)",
				c.op, k, o.op, o.n, o.root, r.rank, c.op, c.n, c.root)
		}
	}
	if err := read(all); err != nil {
		return fmt.Errorf("dist: %s: %w", c.op, err)
	}
	if _, err := r.w.meet(r.rank, call{op: c.op}); err != nil {
		return fmt.Errorf("dist: %s: %w", c.op, err)
	}
	write()
	return nil
}

// SumFloat32 sums the ranks' buffers in rank order, so that every rank gets the same bits every run.
func (r *Rank) SumFloat32(buf []float32) error {
	sum := make([]float32, len(buf))
	return r.collective(call{op: "allreduce float32", n: len(buf), f32: buf}, func(all []call) error {
		copy(sum, all[0].f32)
		for _, c := range all[1:] {
			for i, v := range c.f32 {
				sum[i] += v
			}
		}
		return nil
	}, func() { copy(buf, sum) })
}

// SumFloat64 is SumFloat32 for float64 values.
func (r *Rank) SumFloat64(buf []float64) error {
	sum := make([]float64, len(buf))
	return r.collective(call{op: "allreduce float64", n: len(buf), f64: buf}, func(all []call) error {
		copy(sum, all[0].f64)
		for _, c := range all[1:] {
			for i, v := range c.f64 {
				sum[i] += v
			}
		}
		return nil
	}, func() { copy(buf, sum) })
}

// Bcast copies root's buffer into every rank's; a root outside the world is an error on every rank.
func (r *Rank) Bcast(buf []byte, root int) error {
	from := make([]byte, len(buf))
	return r.collective(call{op: "bcast", root: root, n: len(buf), b: buf}, func(all []call) error {
		if root < 0 || root >= len(all) {
			return fmt.Errorf("root %d of %d ranks", root, len(all))
		}
		copy(from, all[root].b)
		return nil
	}, func() { copy(buf, from) })
}

// Barrier returns once every rank has called it.
func (r *Rank) Barrier() error {
	return r.collective(call{op: "barrier"}, func([]call) error { return nil }, func() {})
}

// Abort makes every other rank's collectives fail, now and later, and ends the calling goroutine
// (runtime.Goexit: its deferred calls run); Aborted reports code.
func (r *Rank) Abort(code int) {
	r.w.mu.Lock()
	if !r.w.abort {
		r.w.abort, r.w.code = true, code
	}
	r.w.mu.Unlock()
	r.w.breakWith(fmt.Errorf("rank %d aborted with code %d", r.rank, code))
	runtime.Goexit()
}

// Aborted reports whether a rank of this world called Abort, and the code of the first that did.
func (r *Rank) Aborted() (code int, ok bool) {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	return r.w.code, r.w.abort
}

// Close ends this rank's part: its later calls fail, and so do the other ranks' collectives, which
// would wait for it forever. A second Close returns nil.
func (r *Rank) Close() error {
	if !r.closed {
		r.closed = true
		r.w.breakWith(fmt.Errorf("rank %d closed", r.rank))
	}
	return nil
}
