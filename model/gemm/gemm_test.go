package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// problem is one multiply with its operands stored as op(X) requires.
type problem struct {
	tA, tB        bool
	m, n, k       int
	alpha, beta   float64
	lda, ldb, ldc int
	a, b, c       []float64
}

// guard is the number of values after C that a multiply must leave alone.
const guard = 64

// newProblem draws operands in [-1, 1) with row strides pad elements wider than needed.
func newProblem(rng *rand.Rand, tA, tB bool, m, n, k, pad int, alpha, beta float64) *problem {
	p := &problem{tA: tA, tB: tB, m: m, n: n, k: k, alpha: alpha, beta: beta}
	ar, ac := rowsCols(tA, m, k)
	br, bc := rowsCols(tB, k, n)
	p.lda, p.ldb, p.ldc = ac+pad, bc+pad, n+pad
	p.lda, p.ldb, p.ldc = max(p.lda, 1), max(p.ldb, 1), max(p.ldc, 1)
	p.a, p.b, p.c = randSlice(rng, ar*p.lda), randSlice(rng, br*p.ldb), randSlice(rng, m*p.ldc+guard)
	return p
}

func randSlice(rng *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = 2*rng.Float64() - 1
	}
	return s
}

// want computes the product with a naive float64 triple loop; padding columns and the guard
// values after C keep their values.
func (p *problem) want() []float64 {
	c := append([]float64(nil), p.c...)
	for i := range p.m {
		for j := range p.n {
			var s float64
			for q := range p.k {
				s += p.at(p.a, p.tA, p.lda, i, q) * p.at(p.b, p.tB, p.ldb, q, j)
			}
			c[i*p.ldc+j] = p.alpha*s + p.beta*c[i*p.ldc+j]
		}
	}
	return c
}

func (p *problem) at(x []float64, t bool, ld, i, j int) float64 {
	if t {
		return x[j*ld+i]
	}
	return x[i*ld+j]
}

// tol bounds the error of a k-term dot product of values in [-1, 1) computed in precision eps.
func (p *problem) tol(eps float64) float64 {
	return eps * float64(p.k+4) * (math.Abs(p.alpha) + math.Abs(p.beta) + 1)
}

func (p *problem) String() string {
	return fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d alpha=%g beta=%g lda=%d ldb=%d ldc=%d",
		p.tA, p.tB, p.m, p.n, p.k, p.alpha, p.beta, p.lda, p.ldb, p.ldc)
}

func toF32(x []float64) []float32 {
	s := make([]float32, len(x))
	for i, v := range x {
		s[i] = float32(v)
	}
	return s
}

// shapes covers single rows and columns, sizes around every kernel's tile, k = 0 and
// shapes larger than one cache block in every dimension.
var shapes = [][3]int{
	{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {3, 3, 0}, {4, 4, 4}, {6, 16, 8}, {14, 32, 5},
	{13, 31, 17}, {15, 33, 2}, {29, 47, 48}, {30, 48, 256}, {113, 65, 257}, {127, 129, 300},
	{230, 70, 520}, {300, 4100, 3},
}

func TestSgemmMatchesNaive(t *testing.T) {
	for _, kr := range sKernels {
		t.Run(kr.name, func(t *testing.T) { forProblems(t, func(p *problem) { checkS(t, kr, p) }) })
	}
}

func TestDgemmMatchesNaive(t *testing.T) {
	for _, kr := range dKernels {
		t.Run(kr.name, func(t *testing.T) { forProblems(t, func(p *problem) { checkD(t, kr, p) }) })
	}
}

// forProblems calls f on every shape, transpose combination and a few alpha/beta/padding variants.
func forProblems(t *testing.T, f func(*problem)) {
	rng := rand.New(rand.NewPCG(1, 2))
	scalars := [][2]float64{{1, 0}, {1, 1}, {-0.5, 2}, {0, 0.5}, {2, 0}}
	for si, s := range shapes {
		for tr := range 4 {
			ab := scalars[(si+tr)%len(scalars)]
			pad := (si + tr) % 3 * 5
			f(newProblem(rng, tr&1 != 0, tr&2 != 0, s[0], s[1], s[2], pad, ab[0], ab[1]))
		}
	}
}

func checkS(t *testing.T, kr *kernel[float32], p *problem) {
	t.Helper()
	c := toF32(p.c)
	run(kr, p.tA, p.tB, p.m, p.n, p.k, float32(p.alpha), toF32(p.a), p.lda, toF32(p.b), p.ldb, float32(p.beta), c[:p.m*p.ldc], p.ldc)
	compare(t, p, p.want(), func(i int) float64 { return float64(c[i]) }, p.tol(1.2e-7))
}

func checkD(t *testing.T, kr *kernel[float64], p *problem) {
	t.Helper()
	c := append([]float64(nil), p.c...)
	run(kr, p.tA, p.tB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, c[:p.m*p.ldc], p.ldc)
	compare(t, p, p.want(), func(i int) float64 { return c[i] }, p.tol(2.3e-16))
}

// compare reports the first element of C (padding and guard included) that is off by more than tol.
func compare(t *testing.T, p *problem, want []float64, got func(int) float64, tol float64) {
	t.Helper()
	for i, w := range want {
		if g := got(i); math.Abs(g-w) > tol || math.IsNaN(g) {
			t.Errorf("%v: C[%d][%d] got %g; want %g (tol %g)", p, i/p.ldc, i%p.ldc, g, w, tol)
			return
		}
	}
}

// TestEdgeTiles covers every row count and column count of a kernel's tile, with C rows
// placed at odd strides, so each specialised border kernel and lane mask runs at least once.
func TestEdgeTiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, kr := range sKernels {
		for m := 1; m <= kr.mr+1; m++ {
			for n := 1; n <= kr.nr+1; n++ {
				checkS(t, kr, newProblem(rng, m%2 == 0, n%3 == 0, m, n, 5+n%7, n%2, 1.5, float64((m+n)%2)/2))
			}
		}
	}
	for _, kr := range dKernels {
		for m := 1; m <= kr.mr+1; m++ {
			for n := 1; n <= kr.nr+1; n++ {
				checkD(t, kr, newProblem(rng, m%2 == 0, n%3 == 0, m, n, 5+n%7, n%2, 1.5, float64((m+n)%2)/2))
			}
		}
	}
}

// TestBetaZeroIgnoresNaN checks that C is overwritten, not scaled, when beta is zero.
func TestBetaZeroIgnoresNaN(t *testing.T) {
	for _, kr := range sKernels {
		for _, alpha := range []float32{0, 1} {
			m, n, k := 17, 35, 9
			a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
			for i := range c {
				c[i] = float32(math.NaN())
			}
			run(kr, false, false, m, n, k, alpha, a, k, b, n, 0, c, n)
			for i, v := range c {
				if v != 0 {
					t.Fatalf("%s alpha=%g: C[%d] got %g; want 0", kr.name, alpha, i, v)
				}
			}
		}
	}
}

// TestDeterministic checks that repeated calls, also from concurrent goroutines, give bitwise equal results.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := newProblem(rng, false, true, 301, 257, 600, 0, 1, 0)
	a, b := toF32(p.a), toF32(p.b)
	first := make([]float32, len(p.c))
	Sgemm(false, true, p.m, p.n, p.k, 1, a, p.lda, b, p.ldb, 0, first, p.ldc)
	results := make([][]float32, 4)
	done := make(chan int)
	for g := range results {
		go func() {
			results[g] = make([]float32, len(p.c))
			Sgemm(false, true, p.m, p.n, p.k, 1, a, p.lda, b, p.ldb, 0, results[g], p.ldc)
			done <- g
		}()
	}
	for range results {
		g := <-done
		for i := range first {
			if math.Float32bits(results[g][i]) != math.Float32bits(first[i]) {
				t.Fatalf("run %d: C[%d] got %x; want %x", g, i, math.Float32bits(results[g][i]), math.Float32bits(first[i]))
			}
		}
	}
}

// TestParallelMatchesSerial wants a multiply split over goroutines to give the bits of one goroutine's, for
// every kernel, both transpositions, ragged row counts and several band counts.
func TestParallelMatchesSerial(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sh := range [][3]int{{300, 257, 600}, {1272, 256, 256}, {29, 700, 300}, {257, 64, 1272}} {
		for _, tr := range [][2]bool{{false, true}, {true, false}, {false, false}, {true, true}} {
			p := newProblem(rng, tr[0], tr[1], sh[0], sh[1], sh[2], 3, 1, 0.5)
			a, b, c := toF32(p.a), toF32(p.b), toF32(p.c)
			for _, kr := range sKernels {
				want := append([]float32(nil), c...)
				runSerial(kr, p.tA, p.m, p.n, p.k, 1, a, p.lda, matB[float32]{t: p.tB, b: b, ld: p.ldb}, 0.5, want, p.ldc)
				for w := 2; w <= 3; w++ {
					for split, run := range map[string]func(kr *kernel[float32], w int, tA bool, m, n, k int, alpha float32, a []float32, lda int, src matB[float32], beta float32, c []float32, ldc int){
						"rows": runParallel[float32], "columns": runColumns[float32]} {
						got := append([]float32(nil), c...)
						run(kr, w, p.tA, p.m, p.n, p.k, 1, a, p.lda, matB[float32]{t: p.tB, b: b, ld: p.ldb}, 0.5, got, p.ldc)
						for i := range want {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s, %s, %d bands of %s: C[%d] = %v; one goroutine gives %v", kr.name, p, w, split, i, got[i], want[i])
							}
						}
					}
				}
			}
			da, db, dc := p.a, p.b, p.c
			want := append([]float64(nil), dc...)
			runSerial(dKernel, p.tA, p.m, p.n, p.k, 1, da, p.lda, matB[float64]{t: p.tB, b: db, ld: p.ldb}, 0.5, want, p.ldc)
			for _, run := range []func(kr *kernel[float64], w int, tA bool, m, n, k int, alpha float64, a []float64, lda int, src matB[float64], beta float64, c []float64, ldc int){
				runParallel[float64], runColumns[float64]} {
				got := append([]float64(nil), dc...)
				run(dKernel, 2, p.tA, p.m, p.n, p.k, 1, da, p.lda, matB[float64]{t: p.tB, b: db, ld: p.ldb}, 0.5, got, p.ldc)
				for i := range want {
					if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
						t.Fatalf("float64 %s: C[%d] = %v; one goroutine gives %v", p, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestSteadyStateNoAllocs checks that the packing buffers are reused between calls (at a size that runs on
// one goroutine: a split multiply allocates its goroutines' closures).
func TestSteadyStateNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items")
	}
	m, n, k := 200, 300, 60
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	da, db, dc := make([]float64, m*k), make([]float64, k*n), make([]float64, m*n)
	allocs := testing.AllocsPerRun(20, func() {
		Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
		Dgemm(true, true, m, n, k, 1, da, m, db, k, 1, dc, n)
	})
	if allocs != 0 {
		t.Errorf("allocations per call pair got %g; want 0", allocs)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name                                     string
		tA, tB                                   bool
		m, n, k, lenA, lda, lenB, ldb, lenC, ldc int
		wantErr                                  string
	}{
		{"ok", false, false, 2, 3, 4, 8, 4, 12, 3, 6, 3, ""},
		{"ok transposed", true, true, 2, 3, 4, 8, 2, 12, 4, 6, 3, ""},
		{"ok empty", false, false, 0, 0, 0, 0, 1, 0, 1, 0, 1, ""},
		{"negative", false, false, -1, 3, 4, 8, 4, 12, 3, 6, 3, "negative size"},
		{"short A", false, false, 2, 3, 4, 7, 4, 12, 3, 6, 3, "A: slice of 7"},
		{"narrow lda", true, false, 2, 3, 4, 8, 1, 12, 3, 6, 3, "A: leading dimension 1 < 2"},
		{"short B", false, true, 2, 3, 4, 8, 4, 11, 4, 6, 3, "B: slice of 11"},
		{"narrow ldc", false, false, 2, 3, 4, 8, 4, 12, 3, 6, 2, "C: leading dimension 2 < 3"},
		{"zero ld", false, false, 0, 0, 0, 0, 0, 0, 1, 0, 1, "A: leading dimension 0 < 1"},
	}
	for _, tt := range tests {
		err := Check(tt.tA, tt.tB, tt.m, tt.n, tt.k, tt.lenA, tt.lda, tt.lenB, tt.ldb, tt.lenC, tt.ldc)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s: got %v; want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%s: got %v; want error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestSgemmPanicsOnShortSlice(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "gemm: C") {
			t.Errorf("recover got %v; want a gemm: C panic", r)
		}
	}()
	Sgemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
}
