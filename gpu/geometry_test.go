package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// The Go twins of kernels/kernels.cu: each kernel's loops over blocks, threads and elements, with its
// arithmetic, run on the CPU. They check the launch geometry and the index arithmetic (coverage, tails,
// per-row offsets, the reduction) against the CPU ops; device_test.go checks the kernels themselves.

// forEach is FOR_EACH: the elements thread t of block b visits, for every thread of g in launch order.
func (g Grid) forEach(n int, visit func(block, thread, i int)) {
	for b := range g.Blocks {
		for t := range g.Threads {
			for i := b*g.Threads + t; i < n; i += g.Blocks * g.Threads {
				visit(b, t, i)
			}
		}
	}
}

// blockSum is block_sum: the threads' values added by halving.
func blockSum(v []float64) float64 {
	s := append([]float64(nil), v...)
	for half := len(s) / 2; half > 0; half /= 2 {
		for t := range half {
			s[t] += s[t+half]
		}
	}
	return s[0]
}

var oddSizes = []int{1, 2, 255, 256, 257, 1000, 4096*BlockSize + 3}

// TestBlockSizes: sum_squares reduces an element-wise block with block_sum, which halves RowThreads.
func TestBlockSizes(t *testing.T) {
	if BlockSize != RowThreads || RowThreads&(RowThreads-1) != 0 {
		t.Fatalf("BlockSize %d, RowThreads %d: want equal powers of two", BlockSize, RowThreads)
	}
}

// TestElementwiseCoversOnce: every element is visited by exactly one thread, whatever n, past the block cap too.
func TestElementwiseCoversOnce(t *testing.T) {
	for _, n := range oddSizes {
		g := Elementwise(n)
		if g.Blocks < 1 || g.Blocks > maxBlocks || g.Threads != BlockSize {
			t.Fatalf("n=%d: grid %+v", n, g)
		}
		seen := make([]uint8, n)
		g.forEach(n, func(_, _, i int) { seen[i]++ })
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: element %d visited %d times", n, i, c)
			}
		}
	}
	if g := Elementwise(0); g.Blocks != 1 {
		t.Errorf("Elementwise(0) = %+v; want one block", g)
	}
}

// TestAdamWTwin: the adamw kernel's loop, element for element, gives optim.AdamW's bits over three steps.
func TestAdamWTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 1001
	w, g := randoms(rng, n), randoms(rng, n)
	want := append([]float32(nil), w...)
	opt := optim.NewAdamW[float32](0.9, 0.95, 1e-8, 0.1)
	var m, v [n]float32
	for step := 1; step <= 3; step++ {
		lr := 1e-3 * float64(step)
		if err := opt.Update([]optim.Param[float32]{{Name: "w", Shape: []int{7, 143}, Value: want, Grad: g}}, lr); err != nil {
			t.Fatal(err)
		}
		k := AdamWConsts{B1: 0.9, C1: 1 - 0.9, B2: 0.95, C2: 1 - 0.95, D1: float32(1 - math.Pow(0.9, float64(step))),
			D2: float32(1 - math.Pow(0.95, float64(step))), Eps: 1e-8, LR: float32(lr), WD: 0.1}
		Elementwise(n).forEach(n, func(_, _, i int) { adamwElement(&w[i], g[i], &m[i], &v[i], k) })
	}
	for i := range w {
		if math.Float32bits(w[i]) != math.Float32bits(want[i]) {
			t.Fatalf("w[%d] = %v after three steps; optim gives %v", i, w[i], want[i])
		}
	}
}

// adamwElement is the adamw kernel's body. Each product is rounded on its own (the conversions forbid
// fusing, as -fmad=false does for nvcc).
func adamwElement(w *float32, g float32, m, v *float32, k AdamWConsts) {
	mi := float32(k.B1**m) + float32(k.C1*g)
	vi := float32(k.B2**v) + float32(k.C2*float32(g*g))
	mhat, vhat := mi/k.D1, vi/k.D2
	denom := float32(math.Sqrt(float64(vhat))) + k.Eps
	*w -= float32(k.LR * (mhat/denom + float32(k.WD**w)))
	*m, *v = mi, vi
}

// TestRMSNormTwin: the rmsnorm kernel's loops (a block per row, threads striding over the columns, their sums
// added by halving) match ops.RMSNormRows on odd widths, to the rounding of the mean.
func TestRMSNormTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, cols := range oddSizes[:6] {
		const rows = 3
		x, w := randoms(rng, rows*cols), randoms(rng, cols)
		got, want := make([]float32, rows*cols), make([]float32, rows*cols)
		ops.RMSNormRows(want, x, w, 1e-5)
		g := Rows(rows)
		for b := range g.Blocks {
			xr, yr := x[b*cols:(b+1)*cols], got[b*cols:(b+1)*cols]
			part := make([]float64, g.Threads)
			for th := range g.Threads {
				for j := th; j < cols; j += g.Threads {
					part[th] += float64(xr[j]) * float64(xr[j])
				}
			}
			r := float32(1 / math.Sqrt(blockSum(part)/float64(cols)+1e-5))
			for th := range g.Threads {
				for j := th; j < cols; j += g.Threads {
					yr[j] = xr[j] * r * w[j]
				}
			}
		}
		closeTo(t, "rmsnorm", cols, got, want, 1e-6)
	}
}

// TestSumSquaresTwin: the blocks' partial sums of sum_squares add up to Σ x².
func TestSumSquaresTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range oddSizes {
		x := randoms(rng, n)
		g := Elementwise(n)
		part := make([][]float64, g.Blocks)
		for b := range part {
			part[b] = make([]float64, g.Threads)
		}
		g.forEach(n, func(b, th, i int) { part[b][th] += float64(x[i]) * float64(x[i]) })
		var got, want float64
		for b := range part {
			got += blockSum(part[b])
		}
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		if math.Abs(got-want) > 1e-12*want {
			t.Errorf("n=%d: %v; want %v", n, got, want)
		}
	}
}

// TestSwiGLUTwin: the swiglu kernel's loop matches ops.SwiGLUInPlace to float32 rounding (the exponentials
// are computed differently).
func TestSwiGLUTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range oddSizes[:6] {
		a, b := randoms(rng, n), randoms(rng, n)
		got, want := make([]float32, n), append([]float32(nil), a...)
		ops.SwiGLUInPlace(want, b)
		Elementwise(n).forEach(n, func(_, _, i int) {
			got[i] = a[i] * float32(1/(1+math.Exp(-float64(a[i])))) * b[i]
		})
		closeTo(t, "swiglu", n, got, want, 1e-6)
	}
}

func randoms(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// closeTo fails when some got[i] differs from want[i] by more than tol relative to max(|want[i]|, 1).
func closeTo(t *testing.T, what string, n int, got, want []float32, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > tol*max(math.Abs(float64(want[i])), 1) {
			t.Fatalf("%s n=%d: [%d] = %v; the CPU op gives %v", what, n, i, got[i], want[i])
		}
	}
}
