package disttest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flextrain/flextrain/dist"
)

// hang is how long run waits for the ranks: only to turn a deadlock into a failure.
const hang = time.Minute

// run drives every rank of a new world of n with f, each on its own goroutine, and returns f's results
// by rank (the zero value for a rank whose goroutine ended in Abort).
func run[T any](t *testing.T, n int, f func(c dist.Comm) T) []T {
	t.Helper()
	out := make([]T, n)
	var wg sync.WaitGroup
	for r, c := range Local(n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[r] = f(c)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(hang):
		t.Fatalf("the ranks of a world of %d still run after %v", n, hang)
	}
	return out
}

// errs formats the errors of every rank, "" for none.
func errs(es []error) []string {
	s := make([]string, len(es))
	for i, e := range es {
		if e != nil {
			s[i] = e.Error()
		}
	}
	return s
}

func TestIdentity(t *testing.T) {
	for n := 1; n <= 4; n++ {
		got := run(t, n, func(c dist.Comm) [3]int { return [3]int{c.Rank(), c.Size(), c.LocalRank()} })
		for r, g := range got {
			if g != [3]int{r, n, r} {
				t.Errorf("world of %d, rank %d: rank, size, local rank = %v", n, r, g)
			}
		}
	}
}

// TestSum: every rank gets the sum of every rank's buffer, the same bits on each, added in rank order:
// 1e8 + 1 is 1e8 in float32, so rank order gives 0 where another order would give 1 (float64 gives 1).
func TestSum(t *testing.T) {
	for _, tc := range []struct {
		name   string
		vals   [][]float64 // by rank
		want32 []float32
		want64 []float64
	}{
		{"one rank", [][]float64{{1, -2, 3}}, []float32{1, -2, 3}, []float64{1, -2, 3}},
		{"two ranks", [][]float64{{1, 2}, {10, 20}}, []float32{11, 22}, []float64{11, 22}},
		{"four ranks", [][]float64{{1}, {2}, {3}, {4}}, []float32{10}, []float64{10}},
		{"rank order", [][]float64{{1e8}, {1}, {-1e8}}, []float32{0}, []float64{1}},
		{"empty", [][]float64{{}, {}, {}}, []float32{}, []float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 { // whatever order the goroutines arrive in
				got32 := run(t, len(tc.vals), func(c dist.Comm) []float32 {
					buf := make([]float32, len(tc.vals[c.Rank()]))
					for i, v := range tc.vals[c.Rank()] {
						buf[i] = float32(v)
					}
					if err := c.SumFloat32(buf); err != nil {
						t.Error(err)
					}
					return buf
				})
				got64 := run(t, len(tc.vals), func(c dist.Comm) []float64 {
					buf := slices.Clone(tc.vals[c.Rank()])
					if err := c.SumFloat64(buf); err != nil {
						t.Error(err)
					}
					return buf
				})
				for r := range got32 {
					if !slices.Equal(got32[r], tc.want32) || !slices.Equal(got64[r], tc.want64) {
						t.Fatalf("rank %d: sums %v and %v, want %v and %v", r, got32[r], got64[r], tc.want32, tc.want64)
					}
				}
			}
		})
	}
}

// TestBcast: from each root of worlds of 1 to 4, every rank ends with the root's bytes.
func TestBcast(t *testing.T) {
	pattern := func(r int) []byte { return []byte(fmt.Sprintf("from rank %d", r)) }
	for n := 1; n <= 4; n++ {
		for root := range n {
			t.Run(fmt.Sprintf("%d ranks root %d", n, root), func(t *testing.T) {
				got := run(t, n, func(c dist.Comm) []byte {
					buf := pattern(c.Rank())
					if err := c.Bcast(buf, root); err != nil {
						t.Error(err)
					}
					return buf
				})
				for r, b := range got {
					if !bytes.Equal(b, pattern(root)) {
						t.Errorf("rank %d holds %q, want %q", r, b, pattern(root))
					}
				}
			})
		}
	}
}

// TestGather: dist.Gather over Local gives every rank every payload in rank order (rank 0's empty).
func TestGather(t *testing.T) {
	payload := func(r int) []byte { return bytes.Repeat([]byte{byte('a' + r)}, r) }
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprintf("%d ranks", n), func(t *testing.T) {
			got := run(t, n, func(c dist.Comm) [][]byte {
				all, err := dist.Gather(c, payload(c.Rank()))
				if err != nil {
					t.Error(err)
				}
				return all
			})
			for r, all := range got {
				for k := range n {
					if len(all) != n || !bytes.Equal(all[k], payload(k)) {
						t.Fatalf("rank %d gathered %q", r, all)
					}
				}
			}
		})
	}
}

// TestAny: dist.Any over Local is true on every rank when any rank passes true.
func TestAny(t *testing.T) {
	for _, tc := range []struct {
		name string
		mine []bool
		want bool
	}{
		{"one false", []bool{false}, false},
		{"one true", []bool{true}, true},
		{"none of 3", []bool{false, false, false}, false},
		{"first of 2", []bool{true, false}, true},
		{"last of 4", []bool{false, false, false, true}, true},
		{"all of 4", []bool{true, true, true, true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, len(tc.mine), func(c dist.Comm) bool {
				yes, err := dist.Any(c, tc.mine[c.Rank()])
				if err != nil {
					t.Error(err)
				}
				return yes
			})
			for r, g := range got {
				if g != tc.want {
					t.Errorf("rank %d: Any = %v, want %v", r, g, tc.want)
				}
			}
		})
	}
}

// TestBarrier: no rank leaves a barrier before every rank has reached it.
func TestBarrier(t *testing.T) {
	for n := 1; n <= 4; n++ {
		var arrived atomic.Int32
		got := run(t, n, func(c dist.Comm) int32 {
			arrived.Add(1)
			if err := c.Barrier(); err != nil {
				t.Error(err)
			}
			return arrived.Load()
		})
		for r, g := range got {
			if g != int32(n) {
				t.Errorf("world of %d: rank %d left the barrier with %d arrived", n, r, g)
			}
		}
	}
}

// TestMismatch: ranks that disagree on the collective, its length or its root all get an error, naming
// the operation, instead of waiting forever or reading past a buffer.
func TestMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(c dist.Comm) error
	}{
		{"length", func(c dist.Comm) error { return c.SumFloat32(make([]float32, 3+c.Rank())) }},
		{"root", func(c dist.Comm) error { return c.Bcast(make([]byte, 4), c.Rank()) }},
		{"bad root", func(c dist.Comm) error { return c.Bcast(make([]byte, 4), 2) }},
		{"operation", func(c dist.Comm) error {
			if c.Rank() == 0 {
				return c.Barrier()
			}
			return c.SumFloat64([]float64{1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for r, e := range errs(run(t, 2, tc.f)) {
				if !strings.HasPrefix(e, "dist: ") {
					t.Errorf("rank %d: error %q, want one from dist", r, e)
				}
			}
		})
	}
}

// TestCloseAndAbort: once a rank has closed or aborted, the others' collectives fail instead of hanging;
// Abort ends its goroutine, and Aborted reports its code on every rank.
func TestCloseAndAbort(t *testing.T) {
	type result struct {
		err     string
		code    int
		aborted bool
	}
	afterClose := result{"dist: barrier: rank 1 closed", 0, false}
	afterAbort := result{"dist: barrier: rank 1 aborted with code 3", 3, true}
	for _, tc := range []struct {
		name  string
		leave func(c dist.Comm) // what rank 1 does instead of the barrier
		want  []result
	}{
		{"close", func(c dist.Comm) {
			if first, again := c.Close(), c.Close(); first != nil || again != nil {
				t.Errorf("Close failed: %v, closed again: %v", first, again)
			}
			if err := c.Barrier(); err == nil || !strings.HasPrefix(err.Error(), "dist: barrier: ") {
				t.Errorf("Barrier after Close: %v", err)
			}
		}, []result{afterClose, {}, afterClose}},
		{"abort", func(c dist.Comm) { c.Abort(3) }, []result{afterAbort, {}, afterAbort}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(t, 3, func(c dist.Comm) result {
				if c.Rank() == 1 {
					tc.leave(c)
					return result{}
				}
				err := c.Barrier()
				code, ok := c.(*Rank).Aborted()
				return result{errs([]error{err})[0], code, ok}
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
