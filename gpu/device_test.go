//go:build gpu

package gpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// These tests run the kernels on a GPU (scripts/gpu-check.sh builds them here and runs them on a lent
// device) and compare each with the CPU op it stands for.

func openDevice(t *testing.T) *Device {
	t.Helper()
	d, err := Open(0, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	t.Logf("device cuda:0: %s", d.Name)
	return d
}

// upload puts host values in a new buffer.
func upload(t *testing.T, d *Device, host []float32) Buffer {
	t.Helper()
	b, err := d.Alloc(len(host))
	if err == nil {
		err = d.Upload(b, host)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Free(b) })
	return b
}

func download(t *testing.T, d *Device, b Buffer) []float32 {
	t.Helper()
	host := make([]float32, b.Len())
	if err := d.Download(host, b); err != nil {
		t.Fatal(err)
	}
	return host
}

// TestDeviceCache: a freed block serves the next allocation of its size class, and a cached block comes
// back as the device left it (nothing on the stream is lost or reordered by the cache).
func TestDeviceCache(t *testing.T) {
	d := openDevice(t)
	a, err := d.Alloc(1000)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 1000)
	for i := range want {
		want[i] = float32(i)
	}
	if err := d.Upload(a, want); err != nil {
		t.Fatal(err)
	}
	d.Free(a)
	b, err := d.Alloc(1010) // the same class as 1000
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(b)
	if b.ptr != a.ptr || b.Len() != 1010 {
		t.Fatalf("Alloc(1010) after Free of 1000 values gave %v (%d), not the cached %v", b.ptr, b.Len(), a.ptr)
	}
	got := make([]float32, 1010)
	if err := d.Download(got, b); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("value %d of the cached block: %v, %v before", i, got[i], want[i])
		}
	}
}

// TestDeviceAdamW: three AdamW steps on the device give optim.AdamW's bits.
func TestDeviceAdamW(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 1<<20 + 7
	w0, g := randoms(rng, n), randoms(rng, n)
	want := append([]float32(nil), w0...)
	opt := optim.NewAdamW[float32](0.9, 0.95, 1e-8, 0.1)
	zeros := make([]float32, n)
	w, gb, m, v := upload(t, d, w0), upload(t, d, g), upload(t, d, zeros), upload(t, d, zeros)
	for step := 1; step <= 3; step++ {
		lr := 1e-3 * float64(step)
		if err := opt.Update([]optim.Param[float32]{{Name: "w", Shape: []int{n}, Value: want, Grad: g}}, lr); err != nil {
			t.Fatal(err)
		}
		k := AdamWConsts{B1: 0.9, C1: 1 - 0.9, B2: 0.95, C2: 1 - 0.95, D1: float32(1 - math.Pow(0.9, float64(step))),
			D2: float32(1 - math.Pow(0.95, float64(step))), Eps: 1e-8, LR: float32(lr)} // a vector: no decay
		if err := d.AdamW(w, gb, m, v, k); err != nil {
			t.Fatal(err)
		}
	}
	got := download(t, d, w)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("w[%d] = %v on the device, %v on the CPU", i, got[i], want[i])
		}
	}
}

// TestDeviceNormAndScale: the squared norm matches the float64 sum, and that of several gradients in one
// download is their norms' sum in order, bit for bit; scaling gives the CPU's products.
func TestDeviceNormAndScale(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(2, 2))
	var each float64
	var all []Buffer
	for _, n := range oddSizes {
		b := upload(t, d, randoms(rng, n))
		s, err := d.SumSquares(b)
		if err != nil {
			t.Fatal(err)
		}
		each, all = each+s, append(all, b)
	}
	if got, err := d.sumSquaresAll(all); err != nil || got != each {
		t.Errorf("Σx² of %d gradients at once %v (%v); one by one %v", len(all), got, err, each)
	}
	for _, n := range oddSizes {
		x := randoms(rng, n)
		b := upload(t, d, x)
		got, err := d.SumSquares(b)
		if err != nil {
			t.Fatal(err)
		}
		var want float64
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		if math.Abs(got-want) > 1e-12*want {
			t.Errorf("n=%d: Σx² = %v on the device, %v on the CPU", n, got, want)
		}
		if err := d.Scale(b, 0.37); err != nil {
			t.Fatal(err)
		}
		for i, v := range download(t, d, b) {
			if v != x[i]*0.37 {
				t.Fatalf("n=%d: scaled [%d] = %v, want %v", n, i, v, x[i]*0.37)
			}
		}
	}
}

// TestDeviceRMSNormSwiGLU: the forward kernels match ops' within float32 rounding.
func TestDeviceRMSNormSwiGLU(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(3, 3))
	for _, cols := range []int{1, 257, 1000, 4096} {
		const rows = 5
		x, w := randoms(rng, rows*cols), randoms(rng, cols)
		want := make([]float32, rows*cols)
		ops.RMSNormRows(want, x, w, 1e-5)
		y := upload(t, d, make([]float32, rows*cols))
		if err := d.RMSNorm(y, upload(t, d, x), upload(t, d, w), rows, cols, 1e-5); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "rmsnorm", cols, download(t, d, y), want, 1e-6)

		a, b := x, randoms(rng, rows*cols)
		want = append(want[:0], a...)
		ops.SwiGLUInPlace(want, b)
		if err := d.SwiGLU(y, upload(t, d, a), upload(t, d, b)); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "swiglu", cols, download(t, d, y), want, 2e-6)
	}
}

// TestDeviceMatMulNT: cuBLAS's x·wᵀ (TF32 off) matches the CPU's within float32 summation error.
func TestDeviceMatMulNT(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(4, 4))
	for _, s := range [][3]int{{1, 1, 1}, {37, 129, 65}, {160, 512, 1536}} {
		rows, in, out := s[0], s[1], s[2]
		x, w := randoms(rng, rows*in), randoms(rng, out*in)
		want := make([]float32, rows*out)
		ops.MatMulNT(want, x, w, rows, in, out)
		y := upload(t, d, make([]float32, rows*out))
		if err := d.MatMulNT(y, upload(t, d, x), upload(t, d, w), rows, in, out); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "matmul", rows*in*out, download(t, d, y), want, 1e-5*math.Sqrt(float64(in)))
	}
}

// TestDeviceOpenErrors: an ordinal the machine lacks is refused with the count of its devices.
func TestDeviceOpenErrors(t *testing.T) {
	if _, err := Open(99, false); err == nil || !strings.Contains(err.Error(), "cuda:99") {
		t.Errorf("Open(99): %v; want an error naming cuda:99", err)
	}
}

// TestDeviceBackwardKernels: SwiGLU's and RMSNorm's backward passes, RoPE both ways and the cross-entropy
// (loss and gradient) on the device match the CPU ops (RMSNorm's weight gradient and RoPE to the bit).
func TestDeviceBackwardKernels(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(5, 5))
	const rows, cols = 9, 1000 // three of RoPE's period below
	a, b, up := randoms(rng, rows*cols), randoms(rng, rows*cols), randoms(rng, rows*cols)
	_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.SwiGLU(in[0], in[1]) },
		[][]float32{a, b}, [][]int{{rows, cols}, {rows, cols}}, up)
	dg, du := upload(t, d, make([]float32, rows*cols)), upload(t, d, make([]float32, rows*cols))
	if err := d.SwiGLUGrad(dg, du, upload(t, d, a), upload(t, d, b), upload(t, d, up)); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "swiglu dgate", cols, download(t, d, dg), want[0], 2e-6)
	closeTo(t, "swiglu dup", cols, download(t, d, du), want[1], 2e-6)

	w := randoms(rng, cols)
	_, want = cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.RMSNorm(in[0], in[1], 1e-5, true, true) },
		[][]float32{a, w}, [][]int{{rows, cols}, {cols}}, up)
	dx, dw := upload(t, d, make([]float32, rows*cols)), upload(t, d, make([]float32, cols))
	if err := d.RMSNormGrad(dx, dw, upload(t, d, a), upload(t, d, w), upload(t, d, up), rows, cols, 1e-5); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "rmsnorm dx", cols, download(t, d, dx), want[0], 1e-6)
	closeTo(t, "rmsnorm dw", cols, download(t, d, dw), want[1], 0)

	const heads, dh, period = 10, 100, 3
	cos, sin := ops.RopeTables(period, dh, 10000)
	wantY, wantG := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.Rope(in[0], cos, sin, dh) },
		[][]float32{a}, [][]int{{rows, heads * dh}}, up)
	c, s := upload(t, d, narrow(cos)), upload(t, d, narrow(sin))
	y := upload(t, d, make([]float32, rows*cols))
	for _, tc := range []struct {
		transpose bool
		in, want  []float32
	}{{false, a, wantY}, {true, up, wantG[0]}} {
		if err := d.Rope(y, upload(t, d, tc.in), c, s, rows, heads*dh, dh, tc.transpose); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "rope", cols, download(t, d, y), tc.want, 0)
	}

	const V = 32000
	targets := []int{3, -100, 31999}
	logits := randoms(rng, len(targets)*V)
	wantLoss, wantD := cpuOp(t, func(in []*G.Node) (*G.Node, error) {
		return ops.CrossEntropy(in[0], []int{3, llava.IgnoreIndex, 31999})
	}, [][]float32{logits}, [][]int{{len(targets), V}}, nil)
	lb := upload(t, d, logits)
	loss, st, err := d.CrossEntropy(lb, targets, V)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Free(d)
	if math.Abs(loss-float64(wantLoss[0])) > 1e-6*loss {
		t.Errorf("cross-entropy %v on the device, %v on the CPU", loss, wantLoss[0])
	}
	dl := upload(t, d, make([]float32, len(logits)))
	if err := d.CrossEntropyGrad(dl, lb, st, 1); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "xent grad", V, download(t, d, dl), wantD[0], 1e-6)
}

// TestDeviceAttention: attention on the device (cuBLAS products, the softmax kernels) matches ops.Attention
// forward and backward, causal and full, with a padded sample and an empty one.
func TestDeviceAttention(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(7, 7))
	for _, full := range []bool{false, true} {
		lay := ops.Layout{B: 3, N: 150, Lens: []int{150, 97, 0}, Heads: 4, HeadDim: 32, Full: full}
		n := lay.B * lay.N * lay.Heads * lay.HeadDim
		q, k, v, g := randoms(rng, n), randoms(rng, n), randoms(rng, n), randoms(rng, n)
		shape := []int{lay.B * lay.N, lay.Heads * lay.HeadDim}
		want, wantG := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.Attention(in[0], in[1], in[2], lay) },
			[][]float32{q, k, v}, [][]int{shape, shape, shape}, g)
		qb, kb, vb, gb := upload(t, d, q), upload(t, d, k), upload(t, d, v), upload(t, d, g)
		o, dq, dk, dv := upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n))
		p, err := d.Attention(o, qb, kb, vb, lay)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.AttentionGrad(dq, dk, dv, qb, kb, vb, gb, p, lay); err != nil {
			t.Fatal(err)
		}
		d.Free(p)
		closeTo(t, "attention o", n, download(t, d, o), want, 1e-5)
		closeTo(t, "attention dq", n, download(t, d, dq), wantG[0], 1e-5)
		closeTo(t, "attention dk", n, download(t, d, dk), wantG[1], 1e-5)
		closeTo(t, "attention dv", n, download(t, d, dv), wantG[2], 1e-5)
	}
}

// TestDeviceTowerOps: LayerNorm, QuickGELU, GELU, the row bias, the residual add and a linear layer's
// backward on the device against the CPU ops.
func TestDeviceTowerOps(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(8, 8))
	const rows, cols, out = 577, 1024, 257
	x, w, b := randoms(rng, rows*cols), randoms(rng, cols), randoms(rng, cols)
	want := make([]float32, rows*cols)
	ops.LayerNorm(want, x, w, b, cols, 1e-5)
	y := upload(t, d, make([]float32, rows*cols))
	if err := d.LayerNorm(y, upload(t, d, x), upload(t, d, w), upload(t, d, b), rows, cols, 1e-5); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "layernorm", cols, download(t, d, y), want, 1e-6)
	for _, tc := range []struct {
		name string
		dev  func(Buffer) error
		cpu  func([]float32)
		tol  float64
	}{
		{"quick_gelu", d.QuickGELU, ops.QuickGELU[float32], 2e-6},
		{"gelu", d.GELU, ops.GELUInPlace[float32], 1e-6},
		{"bias", func(x Buffer) error { return d.AddRowBias(x, upload(t, d, b)) }, func(x []float32) { ops.AddRowBias(x, b) }, 0},
	} {
		xb := upload(t, d, x)
		if err := tc.dev(xb); err != nil {
			t.Fatal(err)
		}
		want := append([]float32(nil), x...)
		tc.cpu(want)
		closeTo(t, tc.name, len(x), download(t, d, xb), want, tc.tol)
	}
	xb, yb := upload(t, d, x), upload(t, d, want)
	if err := d.AddTo(xb, yb); err != nil {
		t.Fatal(err)
	}
	sum := append([]float32(nil), x...)
	ops.AddTo(sum, want)
	closeTo(t, "add", len(x), download(t, d, xb), sum, 0)

	lw, up := randoms(rng, out*cols), randoms(rng, rows*out)
	_, grads := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return ops.Linear(in[0], in[1], true, true, ops.Native) },
		[][]float32{x, lw}, [][]int{{rows, cols}, {out, cols}}, up)
	dx, dw := upload(t, d, make([]float32, rows*cols)), upload(t, d, make([]float32, out*cols))
	if err := d.LinearGrad(dx, dw, upload(t, d, x), upload(t, d, lw), upload(t, d, up), rows, cols, out); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "linear dx", cols, download(t, d, dx), grads[0], 1e-5*math.Sqrt(out))
	closeTo(t, "linear dw", cols, download(t, d, dw), grads[1], 1e-5*math.Sqrt(rows))
}

// BenchmarkDevice times the device's pieces at LLaVA-1.5-7B's sizes (D 4096, MLP 11008, 32 heads, a prompt
// of 640 rows): float32 products with TF32 off and on, the bfloat16 product (ops.BF16), attention forward
// and backward, RMSNorm, and AdamW over one decoder layer's 202M parameters. Each iteration synchronises
// with the device.
func BenchmarkDevice(b *testing.B) {
	for _, tf32 := range []bool{false, true} {
		d, err := Open(0, tf32)
		if err != nil {
			b.Fatal(err)
		}
		const rows, D, F = 640, 4096, 11008
		x, w, y := mustAlloc(b, d, rows*D), mustAlloc(b, d, F*D), mustAlloc(b, d, rows*F)
		b.Run(fmt.Sprintf("matmul-640x4096x11008/tf32=%v", tf32), func(b *testing.B) {
			b.ReportMetric(2*rows*D*F/1e9, "GFLOP/op")
			for range b.N {
				if err := d.MatMulNT(y, x, w, rows, D, F); err != nil {
					b.Fatal(err)
				}
				synchronize(b, d, y)
			}
		})
		if !tf32 {
			g := d.Graphs()
			wb, err := d.narrowBF16(Buffer{}, w)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("matmul-640x4096x11008/bf16", func(b *testing.B) { // x rounded each time, as in a step
				b.ReportMetric(2*rows*D*F/1e9, "GFLOP/op")
				for range b.N {
					if err := g.productBF16(mat{b: x, ld: D}, mat{b: wb, ld: D, t: true}, mat{b: y, ld: F}, rows, F, D, false); err != nil {
						b.Fatal(err)
					}
					synchronize(b, d, y)
				}
			})
			d.Free(wb)
			g.Close()
			q, o := mustAlloc(b, d, rows*D), mustAlloc(b, d, rows*D)
			for _, products := range []ops.Precision{ops.Native, ops.BF16} { // float32, and TF32 under bf16
				lay := ops.Layout{B: 1, N: rows, Lens: []int{rows}, Heads: 32, HeadDim: 128, Products: products}
				b.Run("attention-640x32x128/"+products.String(), func(b *testing.B) {
					for range b.N {
						p, err := d.Attention(o, q, q, q, lay)
						if err == nil {
							err = d.AttentionGrad(x, x, x, q, q, q, o, p, lay)
						}
						if err != nil {
							b.Fatal(err)
						}
						d.Free(p)
						synchronize(b, d, o)
					}
				})
			}
			nw := mustAlloc(b, d, D)
			b.Run("rmsnorm-640x4096", func(b *testing.B) {
				for range b.N {
					if err := d.RMSNorm(o, q, nw, rows, D, 1e-5); err != nil {
						b.Fatal(err)
					}
					synchronize(b, d, o)
				}
			})
			n := 202 << 20
			p := Param{Name: "layer", Shape: []int{n}, Value: mustAlloc(b, d, n), Grad: mustAlloc(b, d, n), M: mustAlloc(b, d, n), V: mustAlloc(b, d, n)}
			opt := optim.NewAdamW[float32](0.9, 0.999, 1e-8, 0)
			b.Run("adamw-202M", func(b *testing.B) {
				for range b.N {
					if _, err := d.AdamWStep(opt, []Param{p}, 1e-5, 0); err != nil {
						b.Fatal(err)
					}
					synchronize(b, d, p.Value)
				}
			})
		}
		d.Close()
	}
}

// mustAlloc is a zeroed buffer of n values.
func mustAlloc(b *testing.B, d *Device, n int) Buffer {
	buf, err := d.Alloc(n)
	if err == nil {
		err = d.Zero(buf)
	}
	if err != nil {
		b.Fatal(err)
	}
	return buf
}

// synchronize waits for the device's work, reading back one value.
func synchronize(b *testing.B, d *Device, buf Buffer) {
	one := Buffer{ptr: buf.ptr, n: 1}
	if err := d.Download(make([]float32, 1), one); err != nil {
		b.Fatal(err)
	}
}

// TestDeviceFlexAttention: FlexAttention on the device, in the dense form and the union form, with float32
// and with bfloat16 HR projections (the tensor cores), matches ops.FlexAttention forward and backward (q, k,
// v and both HR projections) on flexCase's samples.
func TestDeviceFlexAttention(t *testing.T) {
	d := openDevice(t)
	for _, tc := range []struct {
		dense    bool
		products ops.Precision
	}{{true, ops.Native}, {false, ops.Native}, {true, ops.BF16}, {false, ops.BF16}} {
		rng := rand.New(rand.NewPCG(9, 9))
		plan, vals, shapes := flexCase(rng)
		plan.Dense, plan.Products = tc.dense, tc.products
		form := map[bool]string{true: "dense", false: "union"}[tc.dense] + " " + tc.products.String()
		up := randoms(rng, len(vals[0]))
		want, wantG := cpuOpN(t, 5, func(in []*G.Node) (*G.Node, error) {
			return ops.FlexAttention(in[0], in[1], in[2], in[3], in[4], in[5], in[6], plan, true)
		}, vals, shapes, up)
		in := make([]Buffer, 6)
		for i := range in {
			in[i] = upload(t, d, vals[i])
		}
		n := len(vals[0])
		o := upload(t, d, make([]float32, n))
		f, err := d.FlexAttention(o, in[0], in[1], in[2], in[3], in[4], in[5], vals[6], plan)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Free(d)
		tol := 1e-5
		if tc.products == ops.BF16 { // the attention's products in TF32: operands rounded to 2⁻¹¹
			tol = 1e-2
		}
		closeTo(t, form+" o", n, download(t, d, o), want, tol)
		grads := []Buffer{upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n)),
			upload(t, d, make([]float32, len(vals[3]))), upload(t, d, make([]float32, len(vals[4])))}
		if err := d.FlexAttentionGrad(grads[0], grads[1], grads[2], grads[3], grads[4], in[0], in[1], in[2], in[5], upload(t, d, up), f); err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"dq", "dk", "dv", "dwk", "dwv"} {
			closeTo(t, form+" "+name, grads[i].Len(), download(t, d, grads[i]), wantG[i], tol)
		}
	}
}

// TestDeviceImageAttention: the selection's map on the device is the CPU's (selectCase).
func TestDeviceImageAttention(t *testing.T) {
	d := openDevice(t)
	plan, q, k := selectCase(t)
	att, err := d.ImageAttention(upload(t, d, q), upload(t, d, k), plan)
	if err != nil {
		t.Fatal(err)
	}
	for b, rows := range plan.Attention {
		if len(att[b]) != len(rows) {
			t.Fatalf("sample %d: %d rows on the device, %d on the CPU", b, len(att[b]), len(rows))
		}
		for i, row := range rows {
			for u, want := range row {
				if got := att[b][i][u]; math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Errorf("sample %d row %d token %d: %v on the device, %v on the CPU", b, i, u, got, want)
				}
			}
		}
	}
}

// TestDeviceAssembly: the assembled rows and the embeddings' and image features' gradients on the device
// are ops.Assemble's, bit for bit; the patch embedding is the product of im2col's patches.
func TestDeviceAssembly(t *testing.T) {
	d := openDevice(t)
	rng := rand.New(rand.NewPCG(10, 10))
	const V, K, Mh, D = 1000, 576, 64, 256
	var src []ops.Source
	for r := range 700 {
		switch {
		case r < 576:
			src = append(src, ops.Source{Kind: ops.FromImage, Index: r})
		case r%50 == 0:
			src = append(src, ops.Pad)
		default:
			src = append(src, ops.Source{Kind: ops.FromToken, Index: rng.IntN(V)})
		}
	}
	emb, img, hr, up := randoms(rng, V*D), randoms(rng, K*D), randoms(rng, Mh*D), randoms(rng, len(src)*D)
	want, wantG := cpuOpN(t, 2, func(in []*G.Node) (*G.Node, error) { return ops.Assemble(in[0], in[1], in[2], src, true, true) },
		[][]float32{emb, img, hr}, [][]int{{V, D}, {K, D}, {Mh, D}}, up)
	out := upload(t, d, make([]float32, len(src)*D))
	if err := d.Assemble(out, upload(t, d, emb), upload(t, d, img), upload(t, d, hr), src, D); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "assemble", len(src), download(t, d, out), want, 0)
	gb := upload(t, d, up)
	for i, tc := range []struct {
		kind ops.SourceKind
		rows int
	}{{ops.FromToken, V}, {ops.FromImage, K}} {
		dt := upload(t, d, make([]float32, tc.rows*D))
		if err := d.AssembleGrad(dt, gb, src, tc.kind, D); err != nil {
			t.Fatal(err)
		}
		closeTo(t, "assemble grad", tc.rows, download(t, d, dt), wantG[i], 0)
	}

	const images, S, P, C = 2, 336, 14, 64
	px, w := randoms(rng, images*3*S*S), randoms(rng, C*3*P*P)
	g := S / P
	patches := make([]float32, images*g*g*3*P*P)
	for i := range patches {
		patch, e := i/(3*P*P), i%(3*P*P)
		img, cell := patch/(g*g), patch%(g*g)
		patches[i] = px[((img*3+e/(P*P))*S+cell/g*P+(e/P)%P)*S+cell%g*P+e%P]
	}
	wantY := make([]float32, images*g*g*C)
	ops.MatMulNT(wantY, patches, w, images*g*g, 3*P*P, C)
	y := upload(t, d, make([]float32, len(wantY)))
	if err := d.PatchEmbed(y, upload(t, d, px), upload(t, d, w), images, S, P, C); err != nil {
		t.Fatal(err)
	}
	closeTo(t, "patch embedding", len(wantY), download(t, d, y), wantY, 1e-4)
}

// TestDeviceTowerGrads: the backward operations of a vision tower and a projector that train, each run as
// its graph's operation on the device, against the CPU op's gradients: LayerNorm's (x, w, and the bias's
// column sums), QuickGELU's, GELU's, and the class, position and patch embeddings' (those bit for bit: sums
// in the CPU's order).
func TestDeviceTowerGrads(t *testing.T) {
	d := openDevice(t)
	g := d.Graphs()
	defer g.Close()
	rng := rand.New(rand.NewPCG(9, 9))
	const images, n, C, eps = 3, 48, 1024, 1e-5
	rows := images * (n + 1)
	x, w, b, up := randoms(rng, rows*C), randoms(rng, C), randoms(rng, C), randoms(rng, rows*C)
	xv, upv := graphValue(t, g, x, rows, C), graphValue(t, g, up, rows, C)
	_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) {
		return ops.LayerNormOp(in[0], in[1], in[2], eps, ops.NormSpec{X: true, W: true, B: true})
	}, [][]float32{x, w, b}, [][]int{{rows, C}, {C}, {C}}, up)
	closeTo(t, "layernorm dx", C, runOp(t, g, "LayerNormGradX", ops.NormArgs{Eps: eps}, xv, graphValue(t, g, w, C), upv), want[0], 1e-5)
	closeTo(t, "layernorm dw", C, runOp(t, g, "LayerNormGradW", ops.NormArgs{Eps: eps}, xv, upv), want[1], 1e-5)
	closeTo(t, "bias (ColSum)", C, runOp(t, g, "ColSum", nil, upv), want[2], 0)
	for _, act := range []struct {
		name string
		op   func(*G.Node) (*G.Node, error)
		tol  float64
	}{{"QuickGELUGrad", ops.QuickGELUOp, 2e-6}, {"GELUGrad", ops.GELU, 1e-6}} {
		_, want := cpuOp(t, func(in []*G.Node) (*G.Node, error) { return act.op(in[0]) }, [][]float32{x}, [][]int{{rows, C}}, up)
		closeTo(t, act.name, C, runOp(t, g, act.name, nil, xv, upv), want[0], act.tol)
	}
	patch, cls, pos := randoms(rng, images*n*C), randoms(rng, C), randoms(rng, (n+1)*C)
	_, want = cpuOp(t, func(in []*G.Node) (*G.Node, error) {
		return ops.ClassPosEmbed(in[0], in[1], in[2], images, ops.EmbedSpec{Patch: true, Class: true, Pos: true})
	}, [][]float32{patch, cls, pos}, [][]int{{images * n, C}, {C}, {n + 1, C}}, up)
	for which := range 3 {
		name := fmt.Sprintf("ClassPosEmbedGrad%d", which)
		closeTo(t, name, C, runOp(t, g, name, ops.EmbedArgs{Images: images}, upv), want[which], 0)
	}
	if len(g.Fallbacks) != 0 {
		t.Errorf("run on the CPU over copies: %v", g.Fallbacks)
	}
}

// TestDeviceUsage: the device counts a product's operations (2·m·n·k, by the arithmetic it ran in: float32,
// bfloat16, TF32 for BF16 products of float32 operands, float32 again after them) and the peak of the
// blocks its buffers hold, in whole size classes.
func TestDeviceUsage(t *testing.T) {
	d := openDevice(t)
	const rows, in, out = 33, 70, 17
	start := d.Usage()
	x, w, y := upload(t, d, make([]float32, rows*in)), upload(t, d, make([]float32, out*in)), upload(t, d, make([]float32, rows*out))
	if err := d.MatMulNT(y, x, w, rows, in, out); err != nil {
		t.Fatal(err)
	}
	xb, err := d.narrowBF16(Buffer{}, x)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(xb)
	wb, err := d.narrowBF16(Buffer{}, w)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(wb)
	if err := d.gemmBF16(mat{b: xb, ld: in}, mat{b: wb, ld: in, t: true}, mat{b: y, ld: out}, rows, out, in, 0); err != nil {
		t.Fatal(err)
	}
	if err := d.gemmIn(ops.BF16, mat{b: x, ld: in}, mat{b: w, ld: in, t: true}, mat{b: y, ld: out}, rows, out, in, 1, 0, 1); err != nil {
		t.Fatal(err) // TF32
	}
	if err := d.MatMulNT(y, x, w, rows, in, out); err != nil {
		t.Fatal(err) // float32 again: the handle's mode set back
	}
	u := d.Usage().Since(start)
	if want := int64(2 * rows * in * out); u.FLOPsFloat32 != 2*want || u.FLOPsBF16 != want || u.FLOPsTF32 != want {
		t.Errorf("products counted %d float32, %d bfloat16 and %d TF32 operations; want %d, %d, %d", u.FLOPsFloat32, u.FLOPsBF16,
			u.FLOPsTF32, 2*want, want, want)
	}
	if d.blas.mode {
		t.Error("cuBLAS left in TF32 after a float32 product")
	}
	held := 4 * int64(ops.SizeClass(rows*in)+ops.SizeClass(out*in)+ops.SizeClass(rows*out)+ops.SizeClass((rows*in+1)/2)+ops.SizeClass((out*in+1)/2))
	if u.PeakBytes != held { // a new device: these blocks are all it ever held
		t.Errorf("peak %d bytes; the test's blocks are %d", u.PeakBytes, held)
	}
}

// TestDeviceStagedUploads: uploads through the pinned staging buffer, each read by a kernel on the stream
// before the next overwrites the device buffer, the host slice refilled at once after each upload, past the
// buffer's end many times (it drains the stream and starts over), and one too large for it (the pageable
// path): the sums are exact.
func TestDeviceStagedUploads(t *testing.T) {
	d := openDevice(t)
	if d.stage == nil {
		t.Skip("no pinned memory on this machine")
	}
	const n, uploads = 1 << 16, 600 // 256 KiB each, 150 MiB in all
	host, want := make([]float32, n), make([]float32, n)
	acc, buf := upload(t, d, make([]float32, n)), upload(t, d, make([]float32, n))
	for i := range uploads {
		for j := range host {
			host[j] = float32(i%7 + j%3)
			want[j] += host[j]
		}
		if err := d.Upload(buf, host); err != nil {
			t.Fatal(err)
		}
		if err := d.AddTo(acc, buf); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]float32, stagingBytes/4/4+1) // past a quarter of the staging buffer
	for j := range big {
		big[j] = float32(j % 5)
	}
	bb := upload(t, d, big)
	got, gotBig := download(t, d, acc), download(t, d, bb)
	if u := d.Usage(); u.UploadBytes < 4*int64(uploads*n+len(big)) {
		t.Errorf("%d bytes counted as uploaded; the test uploaded more", u.UploadBytes)
	}
	for j := range want {
		if got[j] != want[j] {
			t.Fatalf("sum[%d] = %v after %d staged uploads; want %v", j, got[j], uploads, want[j])
		}
	}
	for j := range big {
		if gotBig[j] != big[j] {
			t.Fatalf("a large upload's value %d is %v; want %v", j, gotBig[j], big[j])
		}
	}
}

// TestDevicePostedErrors: a launch that fails (an empty grid) is queued without an error; the next call that
// waits reports it, naming the kernel, and the one after it does not.
func TestDevicePostedErrors(t *testing.T) {
	d := openDevice(t)
	x := upload(t, d, make([]float32, 10))
	if err := d.launch("scale", Grid{Blocks: 0, Threads: BlockSize}, x.ptr, int64(x.n), 2.0); err != nil {
		t.Fatalf("a queued launch returned %v", err)
	}
	if err := d.Synchronize(); err == nil || !strings.Contains(err.Error(), "kernel scale") {
		t.Errorf("the next wait: %v; want the failed launch's error", err)
	}
	if err := d.Synchronize(); err != nil {
		t.Errorf("the wait after it: %v", err)
	}
}
