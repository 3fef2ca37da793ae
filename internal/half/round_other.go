//go:build !amd64 || purego

package half

// hasAVX2 is false: there is no vector kernel here.
var hasAVX2 = false

// roundBF16Fast rounds nothing: without the amd64 kernel every value takes the Go loop.
func roundBF16Fast(dst, src []float32) int { return 0 }
