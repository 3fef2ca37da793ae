//go:build !amd64 || purego

package ops

// Without the amd64 kernels the element-wise helpers run their Go loops.

var vectorKernels = false

func addVector[T Float](dst, src []T) bool   { return false }
func mulVector[T Float](dst, src []T) bool   { return false }
func recipOnePlusVector[T Float](s []T) bool { return false }
