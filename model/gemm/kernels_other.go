//go:build !amd64 || purego

package gemm

// kernels lists the kernels of this build: the portable one only.
func kernels() ([]*kernel[float32], []*kernel[float64]) {
	s, d := goKernels()
	return []*kernel[float32]{s}, []*kernel[float64]{d}
}
