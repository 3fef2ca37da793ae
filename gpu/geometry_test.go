package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
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

// TestAccumulateTwin: three micro-batches through the kernels (the first with tokens weighted in place by
// the weigh kernel, as Training takes it over from its graph; the later ones added by accumulate, s += w·g)
// and the divide kernel give optim.Accumulator's bits, the sign of a zero included.
func TestAccumulateTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 3*BlockSize*maxBlocks/2 + 5 // past the block cap: the grid-stride loop's second lap
	var acc optim.Accumulator[float32]
	value, want := make([]float32, n), make([]float32, n)
	var sums []float32
	total := 0
	for _, tokens := range []int{0, 7, 19} {
		g := randoms(rng, n)
		g[1] = float32(math.Copysign(0, -1))
		if err := acc.Add([]optim.Param[float32]{{Name: "w", Shape: []int{n}, Value: value, Grad: g}}, tokens); err != nil {
			t.Fatal(err)
		}
		if tokens == 0 {
			continue // the trainer does not read the gradients of a micro-batch without tokens
		}
		w := float32(float64(tokens))
		if sums == nil { // weigh: the graph's buffer becomes the sums
			sums = g
			Elementwise(n).forEach(n, func(_, _, i int) { sums[i] = 0 + float32(w*sums[i]) })
		} else { // accumulate
			Elementwise(n).forEach(n, func(_, _, i int) { sums[i] += float32(w * g[i]) })
		}
		total += tokens
	}
	if _, err := acc.Finish([]optim.Param[float32]{{Name: "w", Shape: []int{n}, Value: value, Grad: want}}); err != nil {
		t.Fatal(err)
	}
	d := float32(float64(total))
	Elementwise(n).forEach(n, func(_, _, i int) { sums[i] = sums[i] / d })
	for i := range want {
		if math.Float32bits(sums[i]) != math.Float32bits(want[i]) {
			t.Fatalf("gradient[%d] = %v through the kernels, %v through optim", i, sums[i], want[i])
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

// TestSwiGLUGradTwin: swiglu_grad's loop matches ops.SwiGLU's backward to float32 rounding.
func TestSwiGLUGradTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const rows, cols = 3, 257
	a, b, up := randoms(rng, rows*cols), randoms(rng, rows*cols), randoms(rng, rows*cols)
	_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.SwiGLU(in[0], in[1]) },
		[][]float32{a, b}, [][]int{{rows, cols}, {rows, cols}}, up)
	dg, du := make([]float32, rows*cols), make([]float32, rows*cols)
	Elementwise(rows*cols).forEach(rows*cols, func(_, _, i int) {
		x := a[i]
		s := float32(1 / (1 + math.Exp(-float64(x))))
		dg[i] = up[i] * b[i] * s * (1 + x*(1-s))
		du[i] = up[i] * x * s
	})
	closeTo(t, "swiglu dgate", rows*cols, dg, want[0], 1e-6)
	closeTo(t, "swiglu dup", rows*cols, du, want[1], 1e-6)
}

// TestRMSNormGradTwin: rms_rows, rmsnorm_grad_x (a block per row, two halving sums) and rmsnorm_grad_w (a
// thread per column over the rows in order) match ops.RMSNorm's backward; the weight's gradient bit for bit.
func TestRMSNormGradTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, cols := range []int{1, 7, 257, 1000} {
		const rows, eps = 5, 1e-5
		x, w, up := randoms(rng, rows*cols), randoms(rng, cols), randoms(rng, rows*cols)
		_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.RMSNorm(in[0], in[1], eps, true, true) },
			[][]float32{x, w}, [][]int{{rows, cols}, {cols}}, up)
		s := make([]float64, rows)
		dx, dw := make([]float32, rows*cols), make([]float32, cols)
		g := Rows(rows)
		for r := range g.Blocks {
			q, dot := make([]float64, g.Threads), make([]float64, g.Threads)
			for th := range g.Threads {
				for j := th; j < cols; j += g.Threads {
					xj := float64(x[r*cols+j])
					q[th] += xj * xj
					dot[th] += float64(up[r*cols+j]) * float64(w[j]) * xj
				}
			}
			s[r] = 1 / math.Sqrt(blockSum(q)/float64(cols)+eps)
			c := s[r] * s[r] * s[r] / float64(cols) * blockSum(dot)
			for j := range cols {
				dx[r*cols+j] = float32(s[r]*float64(up[r*cols+j])*float64(w[j]) - c*float64(x[r*cols+j]))
			}
		}
		Elementwise(cols).forEach(cols, func(_, _, j int) {
			var acc float64
			for r := range rows {
				acc += float64(up[r*cols+j]) * float64(x[r*cols+j]) * s[r]
			}
			dw[j] = float32(acc)
		})
		closeTo(t, "rmsnorm dx", cols, dx, want[0], 1e-6)
		closeTo(t, "rmsnorm dw", cols, dw, want[1], 1e-6)
	}
}

// TestRopeTwin: the rope kernel's thread per pair (row, head, i) gives ops.Rope's forward and backward bit
// for bit, the tables' period shorter than the rows.
func TestRopeTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	const rows, heads, dh, period = 6, 3, 8, 3
	cos, sin := ops.RopeTables(period, dh, 10000)
	c32, s32 := narrow(cos), narrow(sin)
	x, up := randoms(rng, rows*heads*dh), randoms(rng, rows*heads*dh)
	wantY, wantG := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.Rope(in[0], cos, sin, dh) },
		[][]float32{x}, [][]int{{rows, heads * dh}}, up)
	for _, tc := range []struct {
		transpose bool
		in, want  []float32
	}{{false, x, wantY}, {true, up, wantG[0]}} {
		y := make([]float32, len(x))
		width, half := heads*dh, dh/2
		Elementwise(rows*width/2).forEach(rows*width/2, func(_, _, p int) {
			r, q := p/(width/2), p%(width/2)
			i, at, tb := q%half, r*width+(q/half)*dh, (r%period)*dh
			a, b := tc.in[at+i], tc.in[at+half+i]
			if tc.transpose {
				y[at+i] = a*c32[tb+i] + b*s32[tb+half+i]
				y[at+half+i] = b*c32[tb+half+i] - a*s32[tb+i]
			} else {
				y[at+i] = a*c32[tb+i] - b*s32[tb+i]
				y[at+half+i] = b*c32[tb+half+i] + a*s32[tb+half+i]
			}
		})
		closeTo(t, fmt.Sprintf("rope transpose=%v", tc.transpose), len(y), y, tc.want, 0)
	}
}

// TestCrossEntropyTwin: xent_lse (a block per row: halving maximum, then halving sum) and xent_grad give
// ops.CrossEntropy's loss and gradient, rows without a target left out.
func TestCrossEntropyTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	const V = 301
	targets := []int{5, llava.IgnoreIndex, 300, 0}
	rows := len(targets)
	x := randoms(rng, rows*V)
	wantLoss, wantG := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.CrossEntropy(in[0], targets) },
		[][]float32{x}, [][]int{{rows, V}}, nil)
	g := Rows(rows)
	var loss float64
	n := 3 // supervised rows
	d := make([]float32, rows*V)
	for r := range g.Blocks {
		if targets[r] < 0 {
			continue
		}
		m, s := make([]float64, g.Threads), make([]float64, g.Threads)
		for th := range g.Threads {
			m[th] = math.Inf(-1)
			for j := th; j < V; j += g.Threads {
				m[th] = math.Max(m[th], float64(x[r*V+j]))
			}
		}
		mx := blockMax(m)
		for th := range g.Threads {
			for j := th; j < V; j += g.Threads {
				s[th] += math.Exp(float64(x[r*V+j]) - mx)
			}
		}
		lse := mx + math.Log(blockSum(s))
		loss += lse - float64(x[r*V+targets[r]])
		for j := range V {
			d[r*V+j] = float32(math.Exp(float64(x[r*V+j])-lse) / float64(n) * 1) // upstream g = 1
		}
		d[r*V+targets[r]] -= float32(1.0 / float64(n))
	}
	loss /= float64(n)
	if math.Abs(loss-float64(wantLoss[0])) > 1e-6*loss {
		t.Errorf("loss %v; ops.CrossEntropy gives %v", loss, wantLoss[0])
	}
	closeTo(t, "xent grad", rows*V, d, wantG[0], 1e-6)
}

// blockMax is block_max: the threads' values reduced by halving.
func blockMax(v []float64) float64 {
	s := append([]float64(nil), v...)
	for half := len(s) / 2; half > 0; half /= 2 {
		for t := range half {
			s[t] = math.Max(s[t], s[t+half])
		}
	}
	return s[0]
}

// attnTwin is the device's attention, forward and backward, in Go: the products as plain loops (cuBLAS's
// part), attn_softmax and attn_softmax_back as their kernels walk a sample's rows (a block per row of
// H·N). It returns o, and dq, dk, dv for the upstream g.
func attnTwin(lay ops.Layout, q, k, v, g []float32) (o, dq, dk, dv []float32) {
	N, H, dh, W := lay.N, lay.Heads, lay.HeadDim, lay.Heads*lay.HeadDim
	o, dq, dk, dv = make([]float32, len(q)), make([]float32, len(q)), make([]float32, len(q)), make([]float32, len(q))
	scale := float32(1 / math.Sqrt(float64(dh)))
	at := func(x []float32, b, r, h int) []float32 { return x[(b*N+r)*W+h*dh:][:dh] }
	dot := func(a, b []float32) float32 {
		var s float32
		for i := range a {
			s += a[i] * b[i]
		}
		return s
	}
	for b := range lay.B {
		L := lay.Lens[b]
		if L == 0 {
			continue
		}
		p, ds := make([]float32, H*N*N), make([]float32, H*N*N)
		for h := range H {
			for r := range N {
				for j := range L {
					p[(h*N+r)*N+j] = scale * dot(at(q, b, r, h), at(k, b, j, h))
					ds[(h*N+r)*N+j] = dot(at(g, b, r, h), at(v, b, j, h))
				}
			}
		}
		rows := Rows(H * N)
		for blk := range rows.Blocks { // attn_softmax
			r, row := blk%N, p[blk*N:(blk+1)*N]
			keys := min(r+1, L)
			if lay.Full {
				keys = L
			}
			m, s := make([]float64, rows.Threads), make([]float64, rows.Threads)
			for th := range rows.Threads {
				m[th] = math.Inf(-1)
				for j := th; j < keys; j += rows.Threads {
					m[th] = math.Max(m[th], float64(row[j]))
				}
			}
			mx := float32(blockMax(m))
			for th := range rows.Threads {
				for j := th; j < keys; j += rows.Threads {
					row[j] = float32(math.Exp(float64(row[j] - mx)))
					s[th] += float64(row[j])
				}
			}
			inv := float32(1 / blockSum(s))
			for j := range N {
				if j < keys {
					row[j] *= inv
				} else {
					row[j] = 0
				}
			}
		}
		for blk := range rows.Blocks { // attn_softmax_back
			pr, dr := p[blk*N:][:L], ds[blk*N:][:L]
			part := make([]float64, rows.Threads)
			for th := range rows.Threads {
				for j := th; j < L; j += rows.Threads {
					part[th] += float64(pr[j]) * float64(dr[j])
				}
			}
			rho := float32(blockSum(part))
			for j := range L {
				dr[j] = pr[j] * (dr[j] - rho)
			}
		}
		for h := range H {
			for r := range N {
				for j := range L {
					pv, sv := p[(h*N+r)*N+j], ds[(h*N+r)*N+j]
					for c := range dh {
						at(o, b, r, h)[c] += pv * at(v, b, j, h)[c]
						at(dv, b, j, h)[c] += pv * at(g, b, r, h)[c]
						at(dq, b, r, h)[c] += scale * sv * at(k, b, j, h)[c]
						at(dk, b, j, h)[c] += scale * sv * at(q, b, r, h)[c]
					}
				}
			}
		}
	}
	return o, dq, dk, dv
}

// TestAttentionTwin: the device's attention, as attnTwin walks it, matches ops.Attention forward and
// backward, causal and full, with a padded sample and an empty one.
func TestAttentionTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	for _, full := range []bool{false, true} {
		lay := ops.Layout{B: 3, N: 7, Lens: []int{7, 4, 0}, Heads: 2, HeadDim: 4, Full: full}
		n := lay.B * lay.N * lay.Heads * lay.HeadDim
		q, k, v, g := randoms(rng, n), randoms(rng, n), randoms(rng, n), randoms(rng, n)
		shape := []int{lay.B * lay.N, lay.Heads * lay.HeadDim}
		want, wantG := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.Attention(in[0], in[1], in[2], lay) },
			[][]float32{q, k, v}, [][]int{shape, shape, shape}, g)
		o, dq, dk, dv := attnTwin(lay, q, k, v, g)
		name := fmt.Sprintf("attention full=%v", full)
		closeTo(t, name+" o", n, o, want, 1e-5)
		closeTo(t, name+" dq", n, dq, wantG[0], 1e-5)
		closeTo(t, name+" dk", n, dk, wantG[1], 1e-5)
		closeTo(t, name+" dv", n, dv, wantG[2], 1e-5)
	}
}

// TestLayerNormTwin: the layernorm kernel's block per row (two halving sums: the mean, then the variance)
// matches ops.LayerNorm on odd widths.
func TestLayerNormTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, cols := range []int{1, 7, 257, 1024} {
		const rows, eps = 3, 1e-5
		x, w, b := randoms(rng, rows*cols), randoms(rng, cols), randoms(rng, cols)
		want, got := make([]float32, rows*cols), make([]float32, rows*cols)
		ops.LayerNorm(want, x, w, b, cols, eps)
		g := Rows(rows)
		for r := range g.Blocks {
			xr := x[r*cols : (r+1)*cols]
			s, q := make([]float64, g.Threads), make([]float64, g.Threads)
			for th := range g.Threads {
				for j := th; j < cols; j += g.Threads {
					s[th] += float64(xr[j])
				}
			}
			mean := blockSum(s) / float64(cols)
			for th := range g.Threads {
				for j := th; j < cols; j += g.Threads {
					d := float64(xr[j]) - mean
					q[th] += d * d
				}
			}
			inv := 1 / math.Sqrt(blockSum(q)/float64(cols)+eps)
			for j := range cols {
				got[r*cols+j] = float32((float64(xr[j])-mean)*inv)*w[j] + b[j]
			}
		}
		closeTo(t, "layernorm", cols, got, want, 1e-6)
	}
}

// TestActivationTwins: quick_gelu, gelu and add_bias element for element against ops' QuickGELU,
// GELUInPlace and AddRowBias.
func TestActivationTwins(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	const n, cols = 1001, 143
	x, b := randoms(rng, n), randoms(rng, cols)
	want, got := append([]float32(nil), x...), make([]float32, n)
	ops.QuickGELU(want)
	Elementwise(n).forEach(n, func(_, _, i int) { got[i] = x[i] * float32(1/(1+math.Exp(-float64(1.702*x[i])))) })
	closeTo(t, "quick_gelu", n, got, want, 1e-6)
	want = append(want[:0], x...)
	ops.GELUInPlace(want)
	Elementwise(n).forEach(n, func(_, _, i int) {
		v := float64(x[i])
		got[i] = float32(0.5 * v * (1 + math.Erf(v/math.Sqrt2)))
	})
	closeTo(t, "gelu", n, got, want, 0)
	want, got = append(want[:0], x...), append(got[:0], x...)
	ops.AddRowBias(want, b)
	Elementwise(n).forEach(n, func(_, _, i int) { got[i] += b[i%cols] })
	closeTo(t, "add_bias", n, got, want, 0)
}

// TestAssembleTwin: gather_rows over sourceArrays and scatter_rows over feeders match ops.Assemble forward
// and its gradients (embeddings and image features, a token used twice, padding, HR rows), bit for bit.
func TestAssembleTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	const V, K, Mh, D = 11, 6, 4, 5
	src := []ops.Source{{Kind: ops.FromToken, Index: 3}, {Kind: ops.FromImage, Index: 0}, {Kind: ops.FromImage, Index: 5},
		ops.Pad, {Kind: ops.FromToken, Index: 3}, {Kind: ops.FromHR, Index: 2}, {Kind: ops.FromToken, Index: 10}}
	emb, img, hr, up := randoms(rng, V*D), randoms(rng, K*D), randoms(rng, Mh*D), randoms(rng, len(src)*D)
	want, wantG := cpuOpN(t, 2, func(in []*G.Node) (*G.Node, error) { return ops.Assemble(in[0], in[1], in[2], src, true, true) },
		[][]float32{emb, img, hr}, [][]int{{V, D}, {K, D}, {Mh, D}}, up)
	kind, index := sourceArrays(src)
	out := make([]float32, len(src)*D)
	Elementwise(len(out)).forEach(len(out), func(_, _, i int) {
		r, j := i/D, i%D
		table := map[int64][]float32{1: emb, 2: img, 3: hr}[kind[r]]
		if kind[r] != 0 {
			out[i] = table[int(index[r])*D+j]
		}
	})
	closeTo(t, "gather", len(out), out, want, 0)
	for i, tc := range []struct {
		kind ops.SourceKind
		rows int
	}{{ops.FromToken, V}, {ops.FromImage, K}} {
		dt := scatterTwin(up, src, tc.kind, tc.rows, D)
		closeTo(t, fmt.Sprintf("scatter %v", tc.kind), len(dt), dt, wantG[i], 0)
	}
}

// scatterTwin is the scatter_rows kernel over feeders: the gradient [rows, D] of the table of kind that
// src's rows read, from their gradient g.
func scatterTwin(g []float32, src []ops.Source, kind ops.SourceKind, rows, D int) []float32 {
	start, from := feeders(src, kind, rows)
	dt := make([]float32, rows*D)
	Elementwise(len(dt)).forEach(len(dt), func(_, _, e int) {
		row, j := e/D, e%D
		var s float32
		for p := start[row]; p < start[row+1]; p++ {
			s += g[int(from[p])*D+j]
		}
		dt[e] = s
	})
	return dt
}

// TestClassPosEmbedGradTwin: ClassPosEmbed's three gradients as scatter_rows computes them over
// embedGradSources (the patch rows, the class rows' sum, the position rows' sums over the images), and a
// bias's (ColSum: every row feeding one table row), give ops' bits.
func TestClassPosEmbedGradTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(29, 30))
	const images, n, C = 3, 5, 7
	patch, cls, pos, up := randoms(rng, images*n*C), randoms(rng, C), randoms(rng, (n+1)*C), randoms(rng, images*(n+1)*C)
	_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) {
		return ops.ClassPosEmbed(in[0], in[1], in[2], images, ops.EmbedSpec{Patch: true, Class: true, Pos: true})
	}, [][]float32{patch, cls, pos}, [][]int{{images * n, C}, {C}, {n + 1, C}}, up)
	for which := range 3 {
		src, kind, shape := embedGradSources(images, n, C, which)
		got := scatterTwin(up, src, kind, tensor.Shape(shape).TotalSize()/C, C)
		closeTo(t, fmt.Sprintf("ClassPosEmbed gradient %d", which), C, got, want[which], 0)
	}
	x, b := randoms(rng, images*n*C), randoms(rng, C)
	_, wantB := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.AddBias(in[0], in[1], true, true) },
		[][]float32{x, b}, [][]int{{images * n, C}, {C}}, up[:images*n*C])
	rows := make([]ops.Source, images*n)
	for r := range rows {
		rows[r].Kind = ops.FromToken
	}
	closeTo(t, "ColSum", C, scatterTwin(up, rows, ops.FromToken, 1, C), wantB[1], 0)
}

// TestLayerNormGradTwin: ln_rows and layernorm_grad_w (a thread per column over the rows in order), and
// layernorm_grad_x (a block per row, four halving sums), match ops.LayerNormOp's backward; the bias's
// gradient is ColSum's (TestClassPosEmbedGradTwin).
func TestLayerNormGradTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, cols := range []int{1, 7, 257, 1024} {
		const rows, eps = 5, 1e-5
		x, w, b, up := randoms(rng, rows*cols), randoms(rng, cols), randoms(rng, cols), randoms(rng, rows*cols)
		_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) {
			return ops.LayerNormOp(in[0], in[1], in[2], eps, ops.NormSpec{X: true, W: true, B: true})
		}, [][]float32{x, w, b}, [][]int{{rows, cols}, {cols}, {cols}}, up)
		stats := make([]float64, 2*rows)
		dx, dw := make([]float32, rows*cols), make([]float32, cols)
		g := Rows(rows)
		for r := range g.Blocks {
			xr, gr := x[r*cols:(r+1)*cols], up[r*cols:(r+1)*cols]
			sum := func(f func(j int) float64) float64 { // each thread's columns, then the halving sum
				part := make([]float64, g.Threads)
				for th := range g.Threads {
					for j := th; j < cols; j += g.Threads {
						part[th] += f(j)
					}
				}
				return blockSum(part)
			}
			mean := sum(func(j int) float64 { return float64(xr[j]) }) / float64(cols)
			inv := 1 / math.Sqrt(sum(func(j int) float64 { d := float64(xr[j]) - mean; return d * d })/float64(cols)+eps)
			stats[2*r], stats[2*r+1] = mean, inv
			h := func(j int) float64 { return float64(gr[j]) * float64(w[j]) }
			mh := sum(h) / float64(cols)
			mhx := sum(func(j int) float64 { return h(j) * (float64(xr[j]) - mean) * inv }) / float64(cols)
			for j := range cols {
				xh := (float64(xr[j]) - mean) * inv
				dx[r*cols+j] = float32(inv * (h(j) - mh - xh*mhx))
			}
		}
		Elementwise(cols).forEach(cols, func(_, _, j int) {
			var acc float64
			for r := range rows {
				acc += float64(up[r*cols+j]) * (float64(x[r*cols+j]) - stats[2*r]) * stats[2*r+1]
			}
			dw[j] = float32(acc)
		})
		closeTo(t, "layernorm dx", cols, dx, want[0], 1e-6)
		closeTo(t, "layernorm dw", cols, dw, want[1], 1e-6)
	}
}

// TestActivationGradTwins: quick_gelu_grad and gelu_grad element for element against the backward of ops'
// QuickGELUOp and GELU.
func TestActivationGradTwins(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	const n = 1001
	x, up := randoms(rng, n), randoms(rng, n)
	for i := range x {
		x[i] *= 4 // the activations' curved part and both tails
	}
	got := make([]float32, n)
	_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.QuickGELUOp(in[0]) }, [][]float32{x}, [][]int{{n}}, up)
	Elementwise(n).forEach(n, func(_, _, i int) {
		v := x[i]
		s := float32(1 / (1 + math.Exp(-float64(1.702*v))))
		got[i] = up[i] * s * (1 + 1.702*v*(1-s))
	})
	closeTo(t, "quick_gelu_grad", n, got, want[0], 1e-6)
	_, want = cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.GELU(in[0]) }, [][]float32{x}, [][]int{{n}}, up)
	Elementwise(n).forEach(n, func(_, _, i int) {
		v := float64(x[i])
		d := 0.5*(1+math.Erf(v/1.4142135623730951)) + v*math.Exp(-v*v/2)/2.5066282746310002
		got[i] = float32(float64(up[i]) * d)
	})
	closeTo(t, "gelu_grad", n, got, want[0], 0)
}

// TestIm2colTwin: im2col's index arithmetic lays patch (gy, gx) of each image out channel by channel, row by
// row, as the tower reads it: every value of the patches names its own pixel.
func TestIm2colTwin(t *testing.T) {
	const images, S, P = 2, 12, 4
	g, width := S/P, 3*P*P
	px := make([]float32, images*3*S*S)
	for i := range px {
		px[i] = float32(i) // the pixel's own flat index
	}
	patches := make([]float32, images*g*g*width)
	Elementwise(len(patches)).forEach(len(patches), func(_, _, i int) {
		patch, e := i/width, i%width
		img, cell := patch/(g*g), patch%(g*g)
		gy, gx, c, py, x := cell/g, cell%g, e/(P*P), (e/P)%P, e%P
		patches[i] = px[((img*3+c)*S+gy*P+py)*S+gx*P+x]
	})
	for i, v := range patches {
		img, cell, e := i/(g*g*width), (i/width)%(g*g), i%width
		c, y, x := e/(P*P), cell/g*P+(e/P)%P, cell%g*P+e%P
		if want := float32(((img*3+c)*S+y)*S + x); v != want {
			t.Fatalf("patches[%d] = pixel %v, want %v (image %d, channel %d, y %d, x %d)", i, v, want, img, c, y, x)
		}
	}
}

// TestImageAttentionTwin: the selection's map on the device, walked in Go as its gather, batched product,
// rows_softmax and image_attention do, matches the CPU's (ops.Select's map, as SelectPlan.Attention
// receives it), on two image samples of different lengths with causal HR rows and a text-only sample.
func TestImageAttentionTwin(t *testing.T) {
	plan, q, k := selectCase(t)
	B, N, H, dh := plan.B, plan.N, plan.Heads, plan.HeadDim
	W, n := H*dh, plan.Grid*plan.Grid
	scale := float32(1 / math.Sqrt(float64(dh)))
	for b := range B {
		R, L := len(plan.Rows[b]), plan.Lens[b]
		if R == 0 {
			if plan.Attention[b] != nil {
				t.Errorf("sample %d has no HR row but a map", b)
			}
			continue
		}
		keys := selectKeys(plan, b)
		s := make([]float32, H*R*L) // the batched product: head h's rows at h·R
		for h := range H {
			for i, r := range plan.Rows[b] {
				for j := range L {
					s[(h*R+i)*L+j] = scale * dot32(q[(b*N+r)*W+h*dh:][:dh], k[(b*N+j)*W+h*dh:][:dh])
				}
			}
		}
		for row := range Rows(H * R).Blocks { // rows_softmax: a block per row of S
			nk := int(keys[row%R])
			twinMaskedSoftmax(s[row*L:(row+1)*L], func(j int) bool { return j < nk })
		}
		att := make([]float64, R*n)
		Elementwise(R*n).forEach(R*n, func(_, _, e int) {
			i, u := e/n, e%n
			if int64(plan.ImageAt[b]+u) < keys[i] {
				for h := range H {
					att[e] += float64(s[(h*R+i)*L+plan.ImageAt[b]+u])
				}
			}
		})
		for i := range R {
			for u := range n {
				got, want := att[i*n+u], plan.Attention[b][i][u]
				if math.Abs(got-want) > 1e-6*math.Max(1, math.Abs(want)) {
					t.Errorf("sample %d row %d token %d: %v in the twin, %v on the CPU", b, i, u, got, want)
				}
			}
		}
	}
}

// selectCase is a selection problem (two image samples of different lengths with causal HR rows, and a
// text-only sample) with its queries and keys, run through ops.Select on the CPU: plan.Attention holds the
// CPU's map.
func selectCase(t *testing.T) (*ops.SelectPlan, []float32, []float32) {
	rng := rand.New(rand.NewPCG(31, 32))
	const B, N, H, dh, g = 3, 14, 2, 4, 2
	W := H * dh
	plan := &ops.SelectPlan{Layout: ops.Layout{B: B, N: N, Lens: []int{14, 11, 6}, Heads: H, HeadDim: dh},
		Rows: [][]int{{8, 11, 13}, {7, 10}, nil}, ImageAt: []int{2, 3, -1}, OriSizes: [][2]int{{64, 48}, {40, 40}, {}},
		Grid: g, Cells: 3, Threshold: 48, Strategy: "attention", Attention: make([][][]float64, B)}
	q, k := randoms(rng, B*N*W), randoms(rng, B*N*W)
	gr := G.NewGraph()
	qn := G.NodeFromAny(gr, tensor.New(tensor.WithShape(B*N, W), tensor.WithBacking(q)), G.WithName("q"))
	kn := G.NodeFromAny(gr, tensor.New(tensor.WithShape(B*N, W), tensor.WithBacking(k)), G.WithName("k"))
	if _, err := ops.Select(qn, kn, plan); err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(gr)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return plan, q, k
}

// TestRowKernelsTwin: flex_blend and add_rows, walked as their grid-stride loops over R·W elements of a
// compact [R, W] buffer, reach row rows[c] of the sample's [L, W] and nothing else.
func TestRowKernelsTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	const L, W = 9, 5
	rows := []int64{1, 4, 5, 8}
	rowsel := []float32{0, 1, 0, 0, 1, 0, 0, 0, 1} // row 5 computed (the dense form's kind) but not blended
	R, alpha := len(rows), float32(0.3)
	o, mix := randoms(rng, L*W), randoms(rng, R*W)
	want := append([]float32(nil), o...)
	added := append([]float32(nil), o...)
	wantAdded := append([]float32(nil), o...)
	for c, r := range rows {
		for j := range W {
			if rowsel[r] != 0 {
				want[int(r)*W+j] = (1-alpha)*want[int(r)*W+j] + alpha*mix[c*W+j]
			}
			wantAdded[int(r)*W+j] += mix[c*W+j]
		}
	}
	Elementwise(R*W).forEach(R*W, func(_, _, e int) {
		i, at := rows[e/W], int(rows[e/W])*W+e%W
		if rowsel[i] != 0 {
			o[at] = (1-alpha)*o[at] + alpha*mix[e]
		}
		added[at] += mix[e]
	})
	for i := range o {
		if o[i] != want[i] || added[i] != wantAdded[i] {
			t.Fatalf("value %d: blend %v (want %v), add %v (want %v)", i, o[i], want[i], added[i], wantAdded[i])
		}
	}
}
