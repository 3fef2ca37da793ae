//go:build amd64 && !purego

package ops

import "unsafe"

// The element-wise float32 kernels of vec_amd64.s.
//
//go:noescape
func addAVX512(dst, src *float32, n int)

//go:noescape
func mulAVX512(dst, src *float32, n int)

//go:noescape
func recipOnePlusAVX512(s *float32, n int)

// vectorKernels turns the element-wise vector kernels on (tests turn them off to compare with the Go loops).
var vectorKernels = hasAVX512

// vectorOf reports whether the element-wise kernels take x.
func vectorOf[T Float](x []T) bool {
	return vectorKernels && len(x) > 0 && unsafe.Sizeof(x[0]) == 4
}

func addVector[T Float](dst, src []T) bool {
	if !vectorOf(dst) {
		return false
	}
	_ = src[len(dst)-1]
	addAVX512(f32(dst), f32(src), len(dst))
	return true
}

func mulVector[T Float](dst, src []T) bool {
	if !vectorOf(dst) {
		return false
	}
	_ = src[len(dst)-1]
	mulAVX512(f32(dst), f32(src), len(dst))
	return true
}

func recipOnePlusVector[T Float](s []T) bool {
	if !vectorOf(s) {
		return false
	}
	recipOnePlusAVX512(f32(s), len(s))
	return true
}
