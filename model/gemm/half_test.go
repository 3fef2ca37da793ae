package gemm

import (
	"math"
	"math/rand/v2"
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
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%v %+v tA=%v tB=%v: c[%d] = %v, Sgemm on the widened B gives %v", kind, s, tA, tB, i, got[i], want[i])
						}
					}
				}
			}
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
