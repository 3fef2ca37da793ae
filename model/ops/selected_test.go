package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestSelectedVectorKernels checks the per-row kernels of the union form against float64 sums: a row's
// weighted sum of its selected feature rows, and the dots of 8 head vectors with them (k from 1 to 70,
// widths 32 to 256, repeated and out-of-order tokens).
func TestSelectedVectorKernels(t *testing.T) {
	if !selectedVector[float32](8, 32) {
		t.Skip("no vector kernels on this CPU")
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, tc := range []struct{ k, width, rows int }{{1, 32, 3}, {5, 64, 9}, {64, 256, 80}, {70, 96, 40}} {
		x := make([]float32, tc.rows*tc.width)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		toks := make([]int, tc.k)
		for j := range toks {
			toks[j] = rng.IntN(tc.rows)
		}
		pt, dz := make([]float32, tc.k*8), make([]float32, 8*tc.width)
		for i := range pt {
			pt[i] = float32(rng.Float64())
		}
		for i := range dz {
			dz[i] = float32(rng.NormFloat64())
		}
		z, dpt := make([]float32, 8*tc.width), make([]float32, tc.k*8)
		meansVector(z, pt, x, toks, tc.width)
		dotsVector(dpt, dz, x, toks, tc.width)
		for h := range 8 {
			for c := range tc.width {
				want, scale := 0.0, 0.0
				for j, tok := range toks {
					v := float64(pt[j*8+h]) * float64(x[tok*tc.width+c])
					want, scale = want+v, scale+math.Abs(v)
				}
				if d := math.Abs(float64(z[h*tc.width+c]) - want); d > 1e-6*scale+1e-30 {
					t.Fatalf("k %d, width %d: z[%d][%d] = %v; want %v", tc.k, tc.width, h, c, z[h*tc.width+c], want)
				}
			}
			for j, tok := range toks {
				want, scale := 0.0, 0.0
				for c := range tc.width {
					v := float64(dz[h*tc.width+c]) * float64(x[tok*tc.width+c])
					want, scale = want+v, scale+math.Abs(v)
				}
				if d := math.Abs(float64(dpt[j*8+h]) - want); d > 1e-6*scale+1e-30 {
					t.Fatalf("k %d, width %d: dp[%d][%d] = %v; want %v", tc.k, tc.width, j, h, dpt[j*8+h], want)
				}
			}
		}
	}
}

// TestFlexVectorKernelsMatchGEMM runs a float32 FlexAttention layer of 8 heads of 32, in the union form,
// forward and back, with the per-row vector kernels and with the small GEMMs they replace: outputs and
// gradients agree to float32 rounding.
func TestFlexVectorKernelsMatchGEMM(t *testing.T) {
	if !selectedVector[float32](8, 256) {
		t.Skip("no vector kernels on this CPU")
	}
	const B, N, H, dh, M, side, first = 2, 40, 8, 32, 576, 6, 20
	W := H * dh
	rng := rand.New(rand.NewPCG(4, 5))
	value := func(std float64, shape ...int) []float32 {
		x := make([]float32, shapeSize(shape))
		for i := range x {
			x[i] = float32(rng.NormFloat64() * std)
		}
		return x
	}
	cells := make([]float32, B*N*side*side)
	rows := make([][]int, B)
	for s := range B {
		for r := first; r < N; r++ {
			rows[s] = append(rows[s], r)
			for _, c := range rng.Perm(side * side)[:4] {
				cells[(s*N+r)*side*side+c] = 1
			}
		}
	}
	cos, sin := RopeTables(M, dh, 10000)
	plan := &FlexPlan{Layout: Layout{B: B, N: N, Lens: []int{N, N - 3}, Heads: H, HeadDim: dh}, Alpha: 0.7, Rows: rows, M: M,
		Cells: CellGrid{G: side, Zg: 24}, RopeCos: [][]float64{cos, cos}, RopeSin: [][]float64{sin, sin}}
	in := []G.Value{dense32(value(1, B*N, W), B*N, W), dense32(value(1, B*N, W), B*N, W), dense32(value(1, B*N, W), B*N, W),
		dense32(value(0.05, W, W), W, W), dense32(value(0.05, W, W), W, W), dense32(value(1, B*M, W), B*M, W),
		dense32(cells, B*N, side*side), dense32(value(1, B*N, W), B*N, W)}
	run := func(vector bool) (out, grads []float32) {
		defer func(was bool) { selectedKernels = was }(selectedKernels)
		selectedKernels = vector
		c := newFlexCache[float32](plan)
		o, err := c.forward(nil, in[:7])
		if err != nil {
			t.Fatal(err)
		}
		g, err := c.backward(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		return o.Data().([]float32), g.Data().([]float32)
	}
	out, grads := run(true)
	wantOut, wantGrads := run(false)
	for _, c := range []struct {
		name      string
		got, want []float32
	}{{"output", out, wantOut}, {"gradients", grads, wantGrads}} {
		worst, scale := 0.0, 0.0
		for i := range c.want {
			worst = math.Max(worst, math.Abs(float64(c.got[i]-c.want[i])))
			scale = math.Max(scale, math.Abs(float64(c.want[i])))
		}
		if worst > 1e-5*scale {
			t.Errorf("%s: vector kernels and GEMMs differ by %.3g (largest value %.3g)", c.name, worst, scale)
		}
	}
}

func shapeSize(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

func dense32(x []float32, shape ...int) G.Value {
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(x))
}
