package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRowsMatchGathered multiplies operands made of picked rows (out of order, repeated) in place and
// as gathered copies, and wants the same bits: every kernel, every transposition, one goroutine and
// several, float32 and float64.
func TestRowsMatchGathered(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, sh := range [][3]int{{1, 1, 1}, {13, 31, 7}, {29, 70, 300}, {355, 256, 256}, {300, 257, 600}} {
		for tr := range 4 {
			tA, tB := tr&1 != 0, tr&2 != 0
			p := newProblem(rng, tA, tB, sh[0], sh[1], sh[2], 3, 1, 0.5)
			ar, _ := rowsCols(tA, p.m, p.k)
			br, _ := rowsCols(tB, p.k, p.n)
			// The picked rows come from bigger stores: a's rows are spread over a store of 2·ar+1 rows.
			aRows, aStore := pickRows(rng, p.a, p.lda, ar)
			bRows, bStore := pickRows(rng, p.b, p.ldb, br)
			for _, kr := range sKernels {
				for _, w := range []int{1, 2, 3} {
					want, got := toF32(p.c), toF32(p.c)
					runW(kr, w, tA, tB, p.m, p.n, p.k, toF32(p.a), p.lda, nil, toF32(p.b), p.ldb, nil, want, p.ldc)
					runW(kr, w, tA, tB, p.m, p.n, p.k, toF32(aStore), p.lda, aRows, toF32(bStore), p.ldb, bRows, got, p.ldc)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s, %s, %d goroutines: C[%d] = %v with picked rows; gathered gives %v", kr.name, p, w, i, got[i], want[i])
						}
					}
				}
			}
			want, got := append([]float64(nil), p.c...), append([]float64(nil), p.c...)
			runW(dKernel, 2, tA, tB, p.m, p.n, p.k, p.a, p.lda, nil, p.b, p.ldb, nil, want, p.ldc)
			runW(dKernel, 2, tA, tB, p.m, p.n, p.k, aStore, p.lda, aRows, bStore, p.ldb, bRows, got, p.ldc)
			for i := range want {
				if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
					t.Fatalf("float64 %s: C[%d] = %v with picked rows; gathered gives %v", p, i, got[i], want[i])
				}
			}
		}
	}
}

// runW runs a multiply with alpha 1 and beta 0.5 on w goroutines (runSerial when w is 1).
func runW[T float](kr *kernel[T], w int, tA, tB bool, m, n, k int, a []T, lda int, aRows []int, b []T, ldb int, bRows []int, c []T, ldc int) {
	if w == 1 {
		runSerial(kr, tA, tB, m, n, k, 1, a, lda, aRows, b, ldb, bRows, 0.5, c, ldc)
		return
	}
	runParallel(kr, w, tA, tB, m, n, k, 1, a, lda, aRows, b, ldb, bRows, 0.5, c, ldc)
}

// pickRows scatters the rows of x (stride ld) over a store of 2·rows+1 rows of random values, one row
// repeated in place of another equal one, and returns where each row went and the store.
func pickRows(rng *rand.Rand, x []float64, ld, rows int) ([]int, []float64) {
	store := randSlice(rng, (2*rows+1)*ld)
	at := rng.Perm(2*rows + 1)[:rows]
	for i, r := range at {
		copy(store[r*ld:(r+1)*ld], x[i*ld:min(len(x), (i+1)*ld)])
	}
	if rows > 1 { // a repeated row: row 1 is made equal to row 0 and read from row 0's place
		copy(x[ld:2*ld], x[:ld])
		at[1] = at[0]
	}
	return at, store
}

// TestRowsChecked wants SgemmRows to refuse picked rows that do not fit, as Sgemm refuses short slices.
func TestRowsChecked(t *testing.T) {
	a, b, c := make([]float32, 4*3), make([]float32, 3*2), make([]float32, 2*2)
	for _, tc := range []struct {
		name  string
		aRows []int
	}{{"too few", []int{0}}, {"negative", []int{0, -1}}, {"past the end", []int{0, 4}}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			SgemmRows(false, false, 2, 2, 3, 1, a, 3, tc.aRows, b, 2, nil, 0, c, 2)
		}()
	}
	SgemmRows(false, false, 2, 2, 3, 1, a, 3, []int{3, 0}, b, 2, nil, 0, c, 2) // fits: no panic
}
