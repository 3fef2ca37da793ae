//go:build gpu

package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/ops"
)

// TestDeviceNarrowBF16: narrow_bf16 rounds as half.BFloat16.Round, to the bit: ties both ways, values that
// carry into the exponent, subnormals, the largest finite values (which round to infinity), an odd count.
func TestDeviceNarrowBF16(t *testing.T) {
	d := openDevice(t)
	bits := []uint32{0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff, 0xbf818000, 0x00008000, 0x00018000, 0x7f7fffff,
		0xff7f8000, 0x7f7f7fff, 0, 0x80000000, 0x7f800000}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 4001 {
		bits = append(bits, rng.Uint32()&0xbfffffff) // finite
	}
	src := make([]float32, len(bits))
	for i, b := range bits {
		src[i] = math.Float32frombits(b)
	}
	out, err := d.narrowBF16(Buffer{}, upload(t, d, src))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(out)
	words := download(t, d, out)
	for i, x := range src {
		w := math.Float32bits(words[i/2])
		got := uint16(w >> (16 * (i % 2)))
		if want := half.BFloat16.Round(x); got != want {
			t.Fatalf("narrow_bf16(%#08x) = %#04x; half.BFloat16.Round gives %#04x", bits[i], got, want)
		}
	}
}

// TestDeviceProductsBF16: Linear in bfloat16 (ops.BF16) on the device, its forward pass and both gradients,
// against the CPU's over the same values: the operands are rounded alike, so only the order of the float32
// sums differs. The weight is one of the device's weights: the second pass reads its bfloat16 copy, and
// after the weight changes and staleBF16, the copy follows it.
func TestDeviceProductsBF16(t *testing.T) {
	d := openDevice(t)
	g := d.Graphs()
	defer g.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	const rows, in, out = 37, 129, 65
	x, up := randoms(rng, rows*in), randoms(rng, rows*out)
	w := tensor.New(tensor.WithShape(out, in), tensor.WithBacking(randoms(rng, out*in)))
	wv, err := g.Weight("w", w)
	if err != nil {
		t.Fatal(err)
	}
	xv, upv := graphValue(t, g, x, rows, in), graphValue(t, g, up, rows, out)
	for pass := range 3 {
		if pass == 2 { // an update: new values in the weight
			w = tensor.New(tensor.WithShape(out, in), tensor.WithBacking(randoms(rng, out*in)))
			if err := d.Upload(mustBuffer(t, wv), w.Data().([]float32)); err != nil {
				t.Fatal(err)
			}
			g.staleBF16()
		}
		y, grads := cpuOp(t, func(n []*G.Node) (*G.Node, error) { return ops.Linear(n[0], n[1], true, true, ops.BF16) },
			[][]float32{x, w.Data().([]float32)}, [][]int{{rows, in}, {out, in}}, up)
		tol := 1e-5 * math.Sqrt(in)
		closeTo(t, "bf16 x·wᵀ", in, runOp(t, g, "Linear", ops.MatMulArgs{TB: true, Precision: ops.BF16}, xv, wv), y, tol)
		closeTo(t, "bf16 g·w", out, runOp(t, g, "LinearGradX", ops.MatMulArgs{Precision: ops.BF16}, upv, wv), grads[0], 1e-5*math.Sqrt(out))
		closeTo(t, "bf16 gᵀ·x", rows, runOp(t, g, "LinearGradW", ops.MatMulArgs{TA: true, Precision: ops.BF16}, upv, xv), grads[1], 1e-5*math.Sqrt(rows))
	}
	if len(g.bf16) != 1 {
		t.Errorf("%d bfloat16 copies of weights; want 1 (the weight's)", len(g.bf16))
	}
}

// TestDeviceLinearHalfBF16: LinearHalf in bfloat16 reads the weight's bits as they are, and matches the CPU.
func TestDeviceLinearHalfBF16(t *testing.T) {
	d := openDevice(t)
	g := d.Graphs()
	defer g.Close()
	rng := rand.New(rand.NewPCG(9, 10))
	const rows, in, out = 37, 129, 65
	w := half.Matrix{Kind: half.BFloat16, Rows: out, Cols: in, Bits: make([]uint16, out*in)}
	for i, v := range randoms(rng, out*in) {
		w.Bits[i] = half.BFloat16.Round(v)
	}
	x, up := randoms(rng, rows*in), randoms(rng, rows*out)
	y, grads := cpuOpN(t, 1, func(n []*G.Node) (*G.Node, error) { return ops.LinearHalf(n[0], w, true, ops.BF16) },
		[][]float32{x}, [][]int{{rows, in}}, up)
	for _, c := range []struct {
		name  string
		args  ops.HalfArgs
		in    []float32
		shape []int
		want  []float32
		k     int
	}{
		{"LinearHalf", ops.HalfArgs{W: w, Transposed: true, Precision: ops.BF16}, x, []int{rows, in}, y, in},
		{"LinearHalfGradX", ops.HalfArgs{W: w, Precision: ops.BF16}, up, []int{rows, out}, grads[0], out},
	} {
		got := runOp(t, g, c.name, c.args, graphValue(t, g, c.in, c.shape...))
		closeTo(t, c.name, c.k, got, c.want, 1e-5*math.Sqrt(float64(c.k)))
	}
}

// graphValue puts host values on g's device as a graph value of the given shape, lent until g's Release.
func graphValue(t *testing.T, g *Graphs, host []float32, shape ...int) *tensor.Dense {
	t.Helper()
	v, err := g.Upload(tensor.New(tensor.WithShape(shape...), tensor.WithBacking(host)))
	if err != nil {
		t.Fatal(err)
	}
	return v.(*tensor.Dense)
}

// runOp runs the graph operation name with args over in on g's device and brings its output down.
func runOp(t *testing.T, g *Graphs, name string, args any, in ...G.Value) []float32 {
	t.Helper()
	v, err := g.Run(ops.Kernel{Name: name, Args: args}, in)
	if err != nil {
		t.Fatal(err)
	}
	return download(t, g.d, mustBuffer(t, v))
}

func mustBuffer(t *testing.T, v G.Value) Buffer {
	t.Helper()
	b, err := buffer(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
