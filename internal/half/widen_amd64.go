//go:build amd64 && !purego

package half

import "golang.org/x/sys/cpu"

// hasF16C says whether the CPU converts float16 in hardware (F16C: every AVX2 CPU).
var hasF16C = cpu.X86.HasF16C && cpu.X86.HasAVX

// widenF16x8 widens n float16 values (n a multiple of 8) at src into dst with VCVTPH2PS, 8 at a time:
// exact, as the conversion in Go.
//
//go:noescape
func widenF16x8(dst *float32, src *uint16, n int)

// widenF16Fast widens the leading multiple of 8 of src with F16C where the CPU has it, and returns how many
// values it widened.
func widenF16Fast(dst []float32, src []uint16) int {
	n := len(src) &^ 7
	if !hasF16C || n == 0 {
		return 0
	}
	_ = dst[n-1]
	widenF16x8(&dst[0], &src[0], n)
	return n
}
