package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/x448/float16"

	"github.com/flextrain/flextrain/internal/half"
)

// TestSgemmHalfIsSgemmOnWidenedB checks SgemmHalf against Sgemm on B widened beforehand, bit for bit, for
// both 16-bit formats, both layouts of A and B, odd sizes that leave ragged tiles and panels, strides wider
// than the matrices, and a product large enough to be split over goroutines.
func TestSgemmHalfIsSgemmOnWidenedB(t *testing.T) {
	type shape struct{ m, n, k, pad int }
	shapes := []shape{{1, 1, 1, 0}, {1, 37, 19, 0}, {7, 5, 3, 2}, {33, 17, 300, 1}, {5, 300, 33, 0}, {130, 129, 260, 3}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, kind := range []half.Kind{half.Float16, half.BFloat16} {
		for _, s := range shapes {
			for _, tA := range []bool{false, true} {
				for _, tB := range []bool{false, true} {
					br, bc := rowsCols(tB, s.k, s.n)
					ldb := bc + s.pad
					bits := make([]uint16, br*ldb)
					for i := range bits {
						bits[i] = roundHalf(kind, float32(rng.NormFloat64()))
					}
					wide := make([]float32, len(bits))
					kind.Widen(wide, bits)
					ar, ac := rowsCols(tA, s.m, s.k)
					lda := ac + s.pad
					a := make([]float32, ar*lda)
					for i := range a {
						a[i] = float32(rng.NormFloat64())
					}
					ldc := s.n + s.pad
					want, got := make([]float32, s.m*ldc), make([]float32, s.m*ldc)
					for i := range want {
						want[i] = float32(i % 7)
						got[i] = want[i]
					}
					Sgemm(tA, tB, s.m, s.n, s.k, 0.75, a, lda, wide, ldb, 0.5, want, ldc)
					SgemmHalf(tA, tB, s.m, s.n, s.k, 0.75, a, lda, bits, kind, ldb, 0.5, got, ldc)
					sameBits(t, fmt.Sprintf("%v %+v tA=%v tB=%v", kind, s, tA, tB), got, want)
					for _, kr := range sKernels[1:] { // the other kernels this CPU runs, each against itself
						want, got := slices.Clone(want), slices.Clone(want)
						run(kr, tA, tB, s.m, s.n, s.k, 0.75, a, lda, wide, ldb, 0.5, want, ldc)
						runB(kr, tA, s.m, s.n, s.k, 0.75, a, lda, matB[float32]{t: tB, h: bits, kind: kind, ld: ldb}, 0.5, got, ldc)
						sameBits(t, fmt.Sprintf("%s: %v %+v tA=%v tB=%v", kr.name, kind, s, tA, tB), got, want)
					}
				}
			}
		}
	}
}

// sameBits fails unless got and want hold the same bits.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: c[%d] = %v, Sgemm on the widened B gives %v", what, i, got[i], want[i])
		}
	}
}

// TestKernelsFitHalfTile: packHalfT's tile holds a chunk of every kernel's panel width.
func TestKernelsFitHalfTile(t *testing.T) {
	for _, kr := range sKernels {
		if kr.nr > 64 {
			t.Errorf("kernel %s: nr %d > 64, packHalfT's tile width", kr.name, kr.nr)
		}
	}
}

// roundHalf rounds x to kind's nearest value.
func roundHalf(kind half.Kind, x float32) uint16 {
	if kind == half.BFloat16 {
		return uint16(math.Float32bits(x) >> 16) // truncation: any bfloat16 pattern will do
	}
	return float16.Fromfloat32(x).Bits()
}

// TestSgemmHalfChecks panics on a B too short for its shape, as Sgemm does, and on a format that is not 16-bit.
func TestSgemmHalfChecks(t *testing.T) {
	for name, call := range map[string]func(){
		"short B": func() {
			SgemmHalf(false, true, 2, 3, 4, 1, make([]float32, 8), 4, make([]uint16, 11), half.Float16, 4, 0, make([]float32, 6), 3)
		},
		"no kind": func() {
			SgemmHalf(false, true, 2, 3, 4, 1, make([]float32, 8), 4, make([]uint16, 12), 0, 4, 0, make([]float32, 6), 3)
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			call()
		}()
	}
}

// BenchmarkSgemmHalf times y = x·Wᵀ for a 4096×4096 weight, float32 against float16, for one row (a decoding
// step: the widening dominates) and 512 rows (a prompt: the products dominate).
func BenchmarkSgemmHalf(b *testing.B) {
	const n, k = 4096, 4096
	rng := rand.New(rand.NewPCG(1, 2))
	w32, w16 := make([]float32, n*k), make([]uint16, n*k)
	for i := range w32 {
		w16[i] = roundHalf(half.Float16, float32(rng.NormFloat64()))
		w32[i] = half.Float16.Float32(w16[i])
	}
	for _, m := range []int{1, 512} {
		x, y := make([]float32, m*k), make([]float32, m*n)
		b.Run(fmt.Sprintf("rows=%d/float32", m), func(b *testing.B) {
			for range b.N {
				Sgemm(false, true, m, n, k, 1, x, k, w32, k, 0, y, n)
			}
		})
		b.Run(fmt.Sprintf("rows=%d/float16", m), func(b *testing.B) {
			for range b.N {
				SgemmHalf(false, true, m, n, k, 1, x, k, w16, half.Float16, k, 0, y, n)
			}
		})
	}
}

// TestSgemmHalfColumnsMatchSerial: a 16-bit B split by columns (a decoding step's one row) gives one
// goroutine's bits, both layouts of B.
func TestSgemmHalfColumnsMatchSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const m, n, k = 3, 1000, 300
	for _, tB := range []bool{false, true} {
		br, bc := rowsCols(tB, k, n)
		bits := make([]uint16, br*bc)
		for i := range bits {
			bits[i] = roundHalf(half.Float16, float32(rng.NormFloat64()))
		}
		a := make([]float32, m*k)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		src := matB[float32]{t: tB, h: bits, kind: half.Float16, ld: bc}
		want, got := make([]float32, m*n), make([]float32, m*n)
		runSerial(sKernel, false, m, n, k, 1, a, k, src, 0, want, n)
		runColumns(sKernel, 3, false, m, n, k, 1, a, k, src, 0, got, n)
		sameBits(t, fmt.Sprintf("tB=%v", tB), got, want)
	}
}

// TestSgemmBF16IsSgemmOnRoundedOperands checks SgemmBF16 and SgemmHalfBF16 against Sgemm and SgemmHalf on
// operands rounded to bfloat16 beforehand, bit for bit, for every kernel this CPU runs, both layouts, odd
// sizes and strides, and products large enough to be split over goroutines by rows and by columns; and
// that the rounding happened (the plain product of the unrounded operands differs).
func TestSgemmBF16IsSgemmOnRoundedOperands(t *testing.T) {
	type shape struct{ m, n, k, pad int }
	shapes := []shape{{1, 1, 1, 0}, {7, 5, 3, 2}, {33, 17, 300, 1}, {130, 129, 260, 3}, {1, 700, 300, 0}, {300, 257, 600, 1}}
	rng := rand.New(rand.NewPCG(7, 8))
	rounded := func(x []float32) []float32 {
		y := slices.Clone(x)
		half.RoundToBF16(y, y)
		return y
	}
	for _, s := range shapes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				ar, ac := rowsCols(tA, s.m, s.k)
				br, bc := rowsCols(tB, s.k, s.n)
				lda, ldb, ldc := ac+s.pad, bc+s.pad, s.n+s.pad
				a, b := make([]float32, ar*lda), make([]float32, br*ldb)
				for i := range a {
					a[i] = float32(rng.NormFloat64())
				}
				for i := range b {
					b[i] = float32(rng.NormFloat64())
				}
				bits := make([]uint16, len(b))
				for i, x := range b {
					bits[i] = half.BFloat16.Round(x)
				}
				c := make([]float32, s.m*ldc)
				for i := range c {
					c[i] = float32(i % 7)
				}
				what := fmt.Sprintf("%+v tA=%v tB=%v", s, tA, tB)
				for _, kr := range sKernels {
					want, got, plain := slices.Clone(c), slices.Clone(c), slices.Clone(c)
					run(kr, tA, tB, s.m, s.n, s.k, 0.75, rounded(a), lda, rounded(b), ldb, 0.5, want, ldc)
					runB(kr, tA, s.m, s.n, s.k, 0.75, a, lda, matB[float32]{t: tB, b: b, ld: ldb, round: true}, 0.5, got, ldc)
					sameBits(t, kr.name+" SgemmBF16 "+what, got, want)
					run(kr, tA, tB, s.m, s.n, s.k, 0.75, a, lda, b, ldb, 0.5, plain, ldc)
					if slices.Equal(plain, want) && s.k > 1 {
						t.Fatalf("%s %s: rounding changed nothing", kr.name, what)
					}
					want, got = slices.Clone(c), slices.Clone(c)
					runB(kr, tA, s.m, s.n, s.k, 0.75, rounded(a), lda, matB[float32]{t: tB, h: bits, kind: half.BFloat16, ld: ldb}, 0.5, want, ldc)
					runB(kr, tA, s.m, s.n, s.k, 0.75, a, lda, matB[float32]{t: tB, h: bits, kind: half.BFloat16, ld: ldb, round: true}, 0.5, got, ldc)
					sameBits(t, kr.name+" SgemmHalfBF16 "+what, got, want)
				}
				got := slices.Clone(c)
				SgemmBF16(tA, tB, s.m, s.n, s.k, 0.75, a, lda, b, ldb, 0.5, got, ldc)
				want := slices.Clone(c)
				Sgemm(tA, tB, s.m, s.n, s.k, 0.75, rounded(a), lda, rounded(b), ldb, 0.5, want, ldc)
				sameBits(t, "SgemmBF16 "+what, got, want)
				got, want = slices.Clone(c), slices.Clone(c)
				SgemmHalfBF16(tA, tB, s.m, s.n, s.k, 0.75, a, lda, bits, ldb, 0.5, got, ldc)
				SgemmHalf(tA, tB, s.m, s.n, s.k, 0.75, rounded(a), lda, bits, half.BFloat16, ldb, 0.5, want, ldc)
				sameBits(t, "SgemmHalfBF16 "+what, got, want)
			}
		}
	}
}
