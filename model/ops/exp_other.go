//go:build !amd64 || purego

package ops

// expBlocks does nothing without the amd64 vector kernel: expfs computes every element with expf.
func expBlocks(dst, src []float32, a, b float32) int { return 0 }

// hasAVX512 is false without the amd64 kernels.
var hasAVX512 = false
