//go:build amd64 && !purego

//go:generate go run asmgen.go

package gemm

import "golang.org/x/sys/cpu"

// kernels lists the kernels this CPU can run, fastest first.
func kernels() ([]*kernel[float32], []*kernel[float64]) {
	var s []*kernel[float32]
	var d []*kernel[float64]
	if cpu.X86.HasAVX512F {
		s = append(s, &kernel[float32]{name: "avx512", mr: 14, nr: 32, mc: 112, kc: 256, nc: 4096, tile: kernS14x32AVX512, pick: pickS, rows: copyRowsS, cols: transColsS})
		d = append(d, &kernel[float64]{name: "avx512", mr: 14, nr: 16, mc: 112, kc: 256, nc: 2048, tile: kernD14x16AVX512, pick: pickD, rows: copyRowsD, cols: gatherColsD})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		s = append(s, &kernel[float32]{name: "avx2", mr: 6, nr: 16, mc: 96, kc: 256, nc: 4096, tile: kernS6x16AVX2, rows: packRowsS, cols: packCols[float32]})
		d = append(d, &kernel[float64]{name: "avx2", mr: 6, nr: 8, mc: 96, kc: 256, nc: 2048, tile: kernD6x8AVX2, rows: packRowsD, cols: packCols[float64]})
	}
	gs, gd := goKernels()
	return append(s, gs), append(d, gd)
}

// pickS returns the AVX-512 float32 kernel that computes exactly rows rows and the 16-column
// vectors that cols needs; lanes past cols are masked off.
func pickS(rows, cols int) tileFunc[float32] { return sTilesAVX512[rows-1][(cols-1)/16] }

// pickD returns the AVX-512 float64 kernel for 8 or 16 columns; rows past rows are not stored.
func pickD(_, cols int) tileFunc[float64] {
	if cols <= 8 {
		return kernD14x8AVX512
	}
	return kernD14x16AVX512
}
