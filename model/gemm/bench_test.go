package gemm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// sgemmFunc is the signature shared by the implementations the benchmarks compare.
type sgemmFunc func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// benchImpl is one implementation the benchmarks compare; threaded ones (gonum fans large
// problems out over goroutines) get no cpu-GFLOP/s, as one thread's CPU time does not cover them.
type benchImpl struct {
	name     string
	f        sgemmFunc
	threaded bool
}

// benchImpls are compared on the same data; openblas_test.go adds OpenBLAS under the openblas tag.
var benchImpls = []benchImpl{
	{"gemm", Sgemm, false},
	{"gonum", gonumSgemm, true},
}

func gonumSgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gonum.Implementation{}.Sgemm(blasTrans(tA), blasTrans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func blasTrans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// benchShapes are the model's multiplies: the bench model's Linear layers forward (A·Bᵀ with
// torch-layout weights), their input gradient (A·B) and weight gradient (Aᵀ·B), a tiny model's
// layers, and square references.
var benchShapes = []struct {
	tA, tB  bool
	m, n, k int
}{
	{false, true, 1272, 256, 256},
	{false, true, 1272, 704, 256},
	{false, true, 1272, 1024, 256},
	{false, false, 1272, 256, 1024},
	{true, false, 1024, 256, 1272},
	{false, true, 300, 128, 128},
	{false, true, 30, 48, 48},
	{true, false, 48, 48, 96},
	{false, false, 512, 512, 512},
	{false, false, 1024, 1024, 1024},
}

// BenchmarkSgemm reports GFLOP/s per shape (named op_m×n×k, N or T per operand) and implementation.
// Operands are non-zero: gonum skips zero elements of A.
func BenchmarkSgemm(b *testing.B) {
	for _, s := range benchShapes {
		ar, ac := rowsCols(s.tA, s.m, s.k)
		br, bc := rowsCols(s.tB, s.k, s.n)
		rng := rand.New(rand.NewPCG(5, 6))
		x, y, c := toF32(randSlice(rng, ar*ac)), toF32(randSlice(rng, br*bc)), make([]float32, s.m*s.n)
		name := fmt.Sprintf("%s%s_%dx%dx%d", opName(s.tA), opName(s.tB), s.m, s.n, s.k)
		for _, impl := range benchImpls {
			b.Run(name+"/"+impl.name, func(b *testing.B) {
				cpu, ok := threadCPU()
				for b.Loop() {
					impl.f(s.tA, s.tB, s.m, s.n, s.k, 1, x, ac, y, bc, 0, c, s.n)
				}
				reportFlops(b, 2*float64(s.m*s.n*s.k)*float64(b.N), cpu, ok && !impl.threaded)
			})
		}
	}
}

// reportFlops reports GFLOP/s over wall time and, where the thread's CPU time is known, over
// CPU time (cpu-GFLOP/s): the machine is shared, so the second is closer to what one core does.
func reportFlops(b *testing.B, flops float64, cpu func() time.Duration, ok bool) {
	b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	if ok {
		if t := cpu(); t > 0 {
			b.ReportMetric(flops/t.Seconds()/1e9, "cpu-GFLOP/s")
		}
	}
}

func opName(t bool) string {
	if t {
		return "T"
	}
	return "N"
}

// BenchmarkKernels runs one bench-model shape on every kernel this CPU can run (the AVX2 and
// portable ones are the fallbacks of CPUs without AVX-512 and of other architectures).
func BenchmarkKernels(b *testing.B) {
	const m, n, k = 1272, 704, 256
	rng := rand.New(rand.NewPCG(9, 10))
	x, y := randSlice(rng, m*k), randSlice(rng, n*k)
	xs, ys, cs, cd := toF32(x), toF32(y), make([]float32, m*n), make([]float64, m*n)
	for _, kr := range sKernels {
		b.Run("float32/"+kr.name, func(b *testing.B) {
			cpu, ok := threadCPU()
			for b.Loop() {
				run(kr, false, true, m, n, k, 1, xs, k, ys, k, 0, cs, n)
			}
			reportFlops(b, 2*float64(m*n*k)*float64(b.N), cpu, ok)
		})
	}
	for _, kr := range dKernels {
		b.Run("float64/"+kr.name, func(b *testing.B) {
			cpu, ok := threadCPU()
			for b.Loop() {
				run(kr, false, true, m, n, k, 1, x, k, y, k, 0, cd, n)
			}
			reportFlops(b, 2*float64(m*n*k)*float64(b.N), cpu, ok)
		})
	}
}

// BenchmarkDgemm compares Dgemm with gonum's on a bench-model shape and a square one.
func BenchmarkDgemm(b *testing.B) {
	impls := []struct {
		name     string
		f        func(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
		threaded bool
	}{
		{"gemm", Dgemm, false},
		{"gonum", func(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
			gonum.Implementation{}.Dgemm(blasTrans(tA), blasTrans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		}, true},
	}
	for _, s := range [][3]int{{1272, 704, 256}, {512, 512, 512}} {
		m, n, k := s[0], s[1], s[2]
		rng := rand.New(rand.NewPCG(11, 12))
		x, y, c := randSlice(rng, m*k), randSlice(rng, n*k), make([]float64, m*n)
		for _, impl := range impls {
			b.Run(fmt.Sprintf("NT_%dx%dx%d/%s", m, n, k, impl.name), func(b *testing.B) {
				cpu, ok := threadCPU()
				for b.Loop() {
					impl.f(false, true, m, n, k, 1, x, k, y, k, 0, c, n)
				}
				reportFlops(b, 2*float64(m*n*k)*float64(b.N), cpu, ok && !impl.threaded)
			})
		}
	}
}
