package gemm

import "unsafe"

// goTile is the portable 2×8 micro-kernel (see tileFunc). The compiler keeps the two rows of
// accumulators in memory rather than registers, so it reaches only about 5–7 GFLOP/s; a 4×4
// tile of scalars spilled even more.
func goTile[T float](k int, a, b, c *T, ldc int, alpha, beta T, _, _ int) {
	pa, pb := unsafe.Slice(a, 2*k), unsafe.Slice(b, 8*k)
	var r0, r1 [8]T
	for len(pa) >= 2 && len(pb) >= 8 { // the length test lets the compiler drop bounds checks
		a0, a1 := pa[0], pa[1]
		for j, bj := range pb[:8] {
			r0[j] += a0 * bj
			r1[j] += a1 * bj
		}
		pa, pb = pa[2:], pb[8:]
	}
	cs := unsafe.Slice(c, ldc+8)
	storeRow(cs[0:8:8], alpha, beta, &r0)
	storeRow(cs[ldc:ldc+8:ldc+8], alpha, beta, &r1)
}

// storeRow stores row = alpha·v + beta·row, not reading row when beta is zero.
func storeRow[T float](row []T, alpha, beta T, v *[8]T) {
	if beta == 0 {
		for j := range row {
			row[j] = alpha * v[j]
		}
		return
	}
	for j := range row {
		row[j] = alpha*v[j] + beta*row[j]
	}
}

// goKernels returns the portable kernels; their blocking keeps a 64×256 A block in L2.
func goKernels() (*kernel[float32], *kernel[float64]) {
	s := &kernel[float32]{name: "go", mr: 2, nr: 8, mc: 64, kc: 256, nc: 4096, tile: goTile[float32], rows: packRowsS, cols: packCols[float32]}
	d := &kernel[float64]{name: "go", mr: 2, nr: 8, mc: 64, kc: 256, nc: 4096, tile: goTile[float64], rows: packRowsD, cols: packCols[float64]}
	return s, d
}
