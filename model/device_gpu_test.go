//go:build gpu

package model

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/gpu"
	"github.com/flextrain/flextrain/model/ops"
)

var _ Device = (*gpu.Graphs)(nil)

// TestGraphOnGPU runs the tiny golden training case on the GPU and on the CPU, in float32, in bf16 (mixed
// precision) and with recomputation: the loss and every gradient agree to float32's tolerance (cuBLAS sums
// in its own order; bf16's is looser, below), no operation ran on the CPU over copies, and a second run on
// the same device (the arena's buffers lent again, the weights kept) gives the first run's bits.
func TestGraphOnGPU(t *testing.T) {
	d, err := gpu.Open(0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		name                 string
		bf16, recompute, all bool
	}{{"float32", false, false, false}, {"bf16", true, false, false}, {"recompute", false, true, false},
		{"tower trains", false, false, true}} {
		t.Run(tc.name, func(t *testing.T) { testGraphOnGPU(t, d, tc.bf16, tc.recompute, tc.all) })
	}
}

func testGraphOnGPU(t *testing.T, d *gpu.Device, bf16, recompute, all bool) {
	graphs := d.Graphs()
	defer graphs.Close()
	gc, w, opt, cpu := goldenTrainOnCPU(t, bf16, all)
	opt.Recompute = recompute
	run := func() (float64, map[string][]float32) { return runOnGPU(t, graphs, w, gc, opt) }
	// The GPU sums in another order than the CPU: float32's summation error. With bf16, the attention's
	// products run in TF32 on the GPU (operands rounded to 2⁻¹¹; float32 on the CPU), and a value so moved
	// lands one bfloat16 step (2⁻⁸) away from the CPU's where it is rounded as the next product's operand:
	// the gradients then differ as bfloat16 products differ from exact ones (the golden check's bound for
	// them, 8·10⁻²). On the CUDA emulator, which rounds those operands to TF32 and sums as the CPU does, they
	// differ by 1.1·10⁻² to 3.2·10⁻² (k_proj_hd's the most), and by at most 1.3·10⁻⁵ without the TF32
	// rounding; a wrong operation is off by order one.
	lossTol, gradTol := 1e-5, 1e-4
	if bf16 {
		lossTol, gradTol = 3e-3, 8e-2
	}
	loss, grads := run()
	if e := math.Abs(loss-cpu.Loss()) / math.Abs(cpu.Loss()); e > lossTol {
		t.Errorf("loss %v on the GPU, %v on the CPU (relative error %.2g)", loss, cpu.Loss(), e)
	}
	want := cpu.Grads()
	if !slices.Equal(slices.Sorted(maps.Keys(grads)), slices.Sorted(maps.Keys(want))) {
		t.Fatalf("gradients of %v on the GPU, of %v on the CPU", slices.Sorted(maps.Keys(grads)), slices.Sorted(maps.Keys(want)))
	}
	for name, g := range want {
		if weight, ok := strings.CutSuffix(name, "k_proj.bias"); ok {
			// The keys' bias adds q·b to every score of a row, which the softmax ignores: its gradient is
			// zero but for rounding, on both devices, so it is held to that against its weight's.
			scale := norm32(want[weight+"k_proj.weight"].Data().([]float32))
			if n := norm32(grads[name]); !(n <= 1e-6*scale) {
				t.Errorf("%s: norm %.2g against its weight gradient's %.2g; want zero", name, n, scale)
			}
			continue
		}
		if e := relErr32(grads[name], g.Data().([]float32)); e > gradTol {
			t.Errorf("%s: relative error %.2g", name, e)
		} else {
			t.Logf("%s: relative error %.2g", name, e)
		}
	}
	if len(graphs.Fallbacks) != 0 {
		t.Errorf("operations run on the CPU over copies: %v", graphs.Fallbacks)
	}
	again, grads2 := run()
	if again != loss {
		t.Errorf("a second run gives loss %v, the first %v", again, loss)
	}
	for name, g := range grads {
		if !slices.Equal(g, grads2[name]) {
			t.Errorf("%s: a second run gives other bits", name)
		}
	}
	// A run that keeps every value to the end gives the same bits: no value was freed while a kernel
	// queued before its free still read it, or written by a later one before its last read.
	var keeps Device = keepsAll{graphs}
	if bf16 { // it holds the activations in bfloat16 as the graphs do
		keeps = keepsAllPacking{keepsAll{graphs}, graphs}
	}
	kept, grads3 := runOnGPU(t, keeps, w, gc, opt)
	if kept != loss {
		t.Errorf("a run without releases gives loss %v, with them %v", kept, loss)
	}
	for name, g := range grads {
		if !slices.Equal(g, grads3[name]) {
			t.Errorf("%s: a run without releases gives other bits", name)
		}
	}
}

// runOnGPU builds the golden case's graph of w with opt on dev (a GPU's graphs, or a wrapper of them) and
// runs it: its loss, and its gradients brought down.
func runOnGPU(t *testing.T, dev Device, w *Weights, gc *goldenCase, opt Options) (float64, map[string][]float32) {
	t.Helper()
	opt.Device = dev
	g, err := Build(w, gc.batch, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Run(); err != nil {
		t.Fatal(err)
	}
	return g.Loss(), hostGrads(t, g, dev)
}

// norm32 is ‖v‖.
func norm32(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// relErr32 is ‖got − want‖ / ‖want‖.
func relErr32(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num, den = num+d*d, den+float64(want[i])*float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// TestFiniteDifferencesOnGPU checks the GPU's gradients of the tiny golden training case against
// central differences of the GPU's own loss, in float32: for every trainable weight, its three entries of
// largest gradient, each moved by ±h. Every backward kernel of the step lies on the path from the loss to
// some of these weights. h = 10⁻² keeps float32's rounding of the loss (about 4·10⁻⁷ of 6) well below the
// loss's change; the bound, 1% of the entry plus 2·10⁻⁴, allows the differences' own error (the same check
// over the CPU's float32 arithmetic, on the stand-in device, passes at half of it, and fails when
// the gradients are 10% off).
func TestFiniteDifferencesOnGPU(t *testing.T) {
	d, err := gpu.Open(0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	gc, w, opt, _ := goldenTrainOnCPU(t, false, false)
	run := func() (float64, map[string][]float32) {
		graphs := d.Graphs() // a fresh copy of the weights each time
		defer graphs.Close()
		return runOnGPU(t, graphs, w, gc, opt)
	}
	_, grads := run()
	const h = 1e-2
	for _, name := range slices.Sorted(maps.Keys(grads)) {
		g, x := grads[name], w.Get(name).Data().([]float32)
		order := make([]int, len(g))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmpAbs(g[b], g[a]) })
		for _, i := range order[:min(3, len(order))] {
			orig := x[i]
			x[i] = orig + h
			up, _ := run()
			x[i] = orig - h
			down, _ := run()
			x[i] = orig
			num := (up - down) / (2 * h)
			if e := math.Abs(num - float64(g[i])); e > 0.01*math.Abs(num)+2e-4 {
				t.Errorf("%s[%d]: gradient %.6g on the GPU, %.6g by differences", name, i, g[i], num)
			}
		}
	}
}

// cmpAbs orders by magnitude.
func cmpAbs(a, b float32) int {
	return cmp.Compare(math.Abs(float64(a)), math.Abs(float64(b)))
}

// keepsAllPacking is keepsAll for mixed precision: it holds activations in bfloat16 as p does (ops.Packer),
// but frees no value before the graph closes.
type keepsAllPacking struct {
	keepsAll
	p ops.Packer
}

func (k keepsAllPacking) Pack(v G.Value) (any, error) { return k.p.Pack(v) }
func (k keepsAllPacking) Unpack(b any, shape tensor.Shape) (G.Value, error) {
	return k.p.Unpack(b, shape)
}
func (keepsAllPacking) Free(G.Value)         {}
func (keepsAllPacking) FreeSaved(*ops.Saved) {}
