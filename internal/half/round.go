package half

import "math"

// RoundToBF16 sets dst[i] to src[i] rounded to the nearest bfloat16 (ties to even, as BFloat16.Round), kept
// as a float32: the upper half of its bits after adding 0x7fff plus the lowest kept bit. dst may be src; it
// must be at least as long. Eight values at a time with AVX2 where the CPU has it, the same arithmetic.
func RoundToBF16(dst, src []float32) {
	dst = dst[:len(src)]
	done := roundBF16Fast(dst, src)
	for i, x := range src[done:] {
		b := math.Float32bits(x)
		dst[done+i] = math.Float32frombits((b + 0x7fff + (b>>16)&1) &^ 0xffff)
	}
}
