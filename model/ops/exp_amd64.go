//go:build amd64 && !purego

package ops

import (
	"math"

	"golang.org/x/sys/cpu"
)

// expConsts are expf's constants in the order exp_amd64.s reads them; the last is the integer 127.
var expConsts = [12]float32{log2e, 0.5, ln2hi, ln2lo, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1, expLow, expHigh,
	math.Float32frombits(127)}

var hasAVX512 = cpu.X86.HasAVX512F

// expfAVX512 computes dst[i] = expf(src[i]·a + b) for i < n (a multiple of 16), 16 lanes at a time, and
// returns how many it did: n, or the start of the first block with a NaN or a value above expHigh.
//
//go:noescape
func expfAVX512(dst, src *float32, n int, c *[12]float32, a, b float32) int

// expBlocks computes the whole blocks of 16 of src that the vector kernel can, from the start, and
// returns how many elements it did.
func expBlocks(dst, src []float32, a, b float32) int {
	n := len(src) &^ 15
	if !hasAVX512 || n == 0 {
		return 0
	}
	return expfAVX512(&dst[0], &src[0], n, &expConsts, a, b)
}
