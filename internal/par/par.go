// Package par runs the indices of a loop on all cores: the one worker pool of the model's kernels and the
// optimizer's passes.
package par

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Do runs f(0), …, f(n−1) on up to GOMAXPROCS goroutines, each index exactly once, taken in turn as the
// goroutines free up (on the calling goroutine when one is enough). Callers give each index its own output
// region, so results do not depend on the scheduling.
func Do(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}
