//go:build amd64 && !purego

package ops

import "unsafe"

// ropeRowAVX512 is ropeRow for float32 on 16 lanes (rope_amd64.s), for dh a multiple of 32.
//
//go:noescape
func ropeRowAVX512(y, x, cos, sin *float32, heads, dh int, transpose bool)

// ropeRowVector rotates every head of a float32 row with the vector kernel when it can, and reports
// whether it did.
func ropeRowVector[T Float](y, x, cos, sin []T, dh int, transpose bool) bool {
	if !hasAVX512 || dh%32 != 0 || len(x) == 0 || unsafe.Sizeof(x[0]) != 4 {
		return false
	}
	_, _, _, _ = y[len(x)-1], cos[dh-1], sin[dh-1], x[len(x)/dh*dh-1] // the assembly stays inside all four
	ropeRowAVX512(f32(y), f32(x), f32(cos), f32(sin), len(x)/dh, dh, transpose)
	return true
}
