//go:build openblas && cgo

package gemm

import "github.com/flextrain/flextrain/model/gemm/internal/openblas"

// Adds OpenBLAS to BenchmarkSgemm. Run it single-threaded (so that its cpu-GFLOP/s is right)
// with its AVX-512 kernel, which OpenBLAS 0.3.21 does not pick on Zen 5 by itself:
//
//	OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=1 go test -tags openblas -run '^$' -bench . ./model/gemm/
func init() {
	benchImpls = append(benchImpls, benchImpl{"openblas", openblas.Sgemm, false})
}
