//go:build amd64 && !purego

package half

import "golang.org/x/sys/cpu"

// hasAVX2 says whether the CPU has AVX2's integer vectors.
var hasAVX2 = cpu.X86.HasAVX2

// roundBF16x8 rounds n values (n a multiple of 8) at src into dst, 8 at a time, as RoundToBF16's loop does.
//
//go:noescape
func roundBF16x8(dst, src *float32, n int)

// roundBF16Fast rounds the leading multiple of 8 of src with AVX2 where the CPU has it, and returns how
// many values it rounded.
func roundBF16Fast(dst, src []float32) int {
	n := len(src) &^ 7
	if !hasAVX2 || n == 0 {
		return 0
	}
	_ = dst[n-1]
	roundBF16x8(&dst[0], &src[0], n)
	return n
}
