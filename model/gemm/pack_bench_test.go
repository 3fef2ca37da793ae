package gemm

import "testing"

// BenchmarkPackA packs the A operand of a bench-model multiply (1272×256) the way each float32
// kernel does, stored as is (N: groups strided, transposed while packing) and transposed (T:
// groups contiguous), and reports the cost per value.
func BenchmarkPackA(b *testing.B) {
	const m, k = 1272, 256
	a := make([]float32, m*k)
	for _, kr := range sKernels {
		dst := make([]float32, roundUp(kr.mc, kr.mr)*k)
		for _, tA := range []bool{false, true} {
			lda := k
			if tA {
				lda = m
			}
			b.Run(kr.name+"/"+opName(tA), func(b *testing.B) {
				for b.Loop() {
					for ic := 0; ic < m; ic += kr.mc {
						packA(dst, tA, a, lda, ic, 0, min(kr.mc, m-ic), k, kr.mr, kr.rows, kr.cols)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*m*k), "ns/value")
			})
		}
	}
}
