//go:build amd64 && !purego

package optim

import "golang.org/x/sys/cpu"

var hasAVX512 = cpu.X86.HasAVX512F

// adamwAVX512 runs the AdamW element loop over n elements (a multiple of 16), 16 lanes at a time.
//
//go:noescape
func adamwAVX512(w, grad, m, v *float32, n int, k *adamwConsts[float32])

// adamwBlocks updates the whole blocks of 16 elements from the start on the vector kernel and returns how
// many elements it did (0 without AVX-512).
func adamwBlocks(w, g, m, v []float32, k *adamwConsts[float32]) int {
	n := len(w) &^ 15
	if !hasAVX512 || n == 0 {
		return 0
	}
	_, _, _ = g[n-1], m[n-1], v[n-1] // the assembly stays inside all four
	adamwAVX512(&w[0], &g[0], &m[0], &v[0], n, k)
	return n
}
