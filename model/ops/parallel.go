package ops

import (
	"runtime"

	"github.com/flextrain/flextrain/internal/par"
)

// parallel runs f(0), …, f(n−1) on up to GOMAXPROCS goroutines, each index exactly once (par.Do). Callers
// give each index its own output region, so results do not depend on the scheduling.
func parallel(n int, f func(i int)) { par.Do(n, f) }

// Parallel is parallel for the callers of the package: f(0), …, f(n−1) on up to GOMAXPROCS goroutines, each
// writing only its own outputs.
func Parallel(n int, f func(i int)) { parallel(n, f) }

// grain is the least number of elements worth a goroutine in an element-wise kernel.
const grain = 1 << 15

// parallelRange cuts [0, n) into one piece per goroutine, at most GOMAXPROCS pieces of at least minLen, and
// runs f on each; f(lo, hi) writes only its own part of any output, so the bits do not depend on the cut.
func parallelRange(n, minLen int, f func(lo, hi int)) {
	parts := min(runtime.GOMAXPROCS(0), n/max(1, minLen))
	if parts <= 1 {
		f(0, n)
		return
	}
	parallel(parts, func(i int) { f(i*n/parts, (i+1)*n/parts) })
}
