//go:build !amd64 || purego

package ops

// selectedKernels is false without the amd64 kernels: the per-row products run as small GEMMs.
var selectedKernels = false

func selectedVector[T Float](heads, width int) bool { return false }

func meansVector[T Float](z, pt, x []T, toks []int, width int) { panic("ops: no vector kernel") }

func dotsVector[T Float](dpt, dz, x []T, toks []int, width int) { panic("ops: no vector kernel") }
