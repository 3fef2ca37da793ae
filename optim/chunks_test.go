package optim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// longParams are parameters longer than a chunk and shorter, with random gradients.
func longParams(seed uint64) []Param[float32] {
	r := rand.New(rand.NewPCG(seed, 3))
	var ps []Param[float32]
	for i, n := range []int{3*chunk + 5, 17, chunk} {
		p := Param[float32]{Name: fmt.Sprint("p", i), Shape: []int{n, 1}, Value: make([]float32, n), Grad: make([]float32, n)}
		for j := range n {
			p.Grad[j] = float32(r.NormFloat64())
		}
		ps = append(ps, p)
	}
	return ps
}

// TestChunkedPassesCoverEveryElement runs the accumulator, the norm and the clipping, which the cores share by
// chunks, on one goroutine and on four, against element-by-element references: every element is taken once,
// and the bits do not depend on the number of cores.
func TestChunkedPassesCoverEveryElement(t *testing.T) {
	a, b := longParams(1), longParams(2)
	var wantNorm float64
	for _, p := range a {
		for _, g := range p.Grad {
			wantNorm += float64(g) * float64(g)
		}
	}
	wantNorm = math.Sqrt(wantNorm)
	var norms []float64
	for _, procs := range []int{1, 4} {
		func() {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			norm := GradNorm(a)
			if math.Abs(norm-wantNorm) > 1e-12*wantNorm {
				t.Errorf("GOMAXPROCS %d: GradNorm = %.17g; the element-by-element sum gives %.17g", procs, norm, wantNorm)
			}
			norms = append(norms, norm)

			var acc Accumulator[float32]
			got := longParams(0)
			for _, mb := range []struct {
				ps     []Param[float32]
				tokens int
			}{{a, 3}, {b, 5}} {
				for i := range got {
					copy(got[i].Grad, mb.ps[i].Grad)
				}
				if err := acc.Add(got, mb.tokens); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := acc.Finish(got); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				for j, g := range got[i].Grad {
					want := (float32(3*a[i].Grad[j]) + float32(5*b[i].Grad[j])) / 8
					if math.Float32bits(g) != math.Float32bits(want) {
						t.Fatalf("GOMAXPROCS %d: accumulated %s[%d] = %v; want %v", procs, got[i].Name, j, g, want)
					}
				}
			}

			if _, err := ClipGradNorm(got, 1); err != nil {
				t.Fatal(err)
			}
			if n := GradNorm(got); math.Abs(n-1) > 1e-5 {
				t.Errorf("GOMAXPROCS %d: norm after clipping to 1 is %g", procs, n)
			}
		}()
	}
	if math.Float64bits(norms[0]) != math.Float64bits(norms[1]) {
		t.Errorf("GradNorm on 1 and 4 goroutines: %.17g and %.17g", norms[0], norms[1])
	}
}
