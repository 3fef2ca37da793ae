package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
)

// randFloat32 is a tensor of normal values, most of them not bfloat16 values.
func randFloat32(rng *rand.Rand, shape ...int) *tensor.Dense {
	v := make([]float32, tensor.Shape(shape).TotalSize())
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

// roundedBF16 is a copy of d with every value rounded to bfloat16.
func roundedBF16(d *tensor.Dense) *tensor.Dense {
	c := d.Clone().(*tensor.Dense)
	half.RoundToBF16(c.Data().([]float32), c.Data().([]float32))
	return c
}

// runProduct runs y = build(in) and loss = Σ y ⊙ r (runObjective), and returns y and the gradients of every
// input.
func runProduct(t *testing.T, build opBuilder, r *tensor.Dense, in ...*tensor.Dense) (y []float32, grads [][]float32) {
	t.Helper()
	all := make([]int, len(in))
	for i := range all {
		all[i] = i
	}
	out, _, gs := runObjective(t, build, in, all, r)
	for _, g := range gs {
		grads = append(grads, g.Data().([]float32))
	}
	return out.Data().([]float32), grads
}

// TestBF16Products: a product in BF16 gives, bit for bit, the native product of its operands rounded to
// bfloat16 (the upstream gradient included), and differs from the native product of the operands as they
// are. Odd sizes, so that no tail of the CPU's kernels is skipped.
func TestBF16Products(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const R, In, Out = 7, 13, 5
	wBits := randFloat32(rng, Out, In)
	w16 := half.Matrix{Kind: half.BFloat16, Rows: Out, Cols: In, Bits: make([]uint16, Out*In)}
	for i, x := range wBits.Data().([]float32) {
		w16.Bits[i] = half.BFloat16.Round(x)
	}
	cases := []struct {
		name  string
		build func(p Precision) opBuilder
		in    []*tensor.Dense
	}{
		{"Linear", func(p Precision) opBuilder {
			return func(n []*G.Node) (*G.Node, error) { return Linear(n[0], n[1], true, true, p) }
		}, []*tensor.Dense{randFloat32(rng, R, In), randFloat32(rng, Out, In)}},
		{"LinearHalf", func(p Precision) opBuilder {
			return func(n []*G.Node) (*G.Node, error) { return LinearHalf(n[0], w16, true, p) }
		}, []*tensor.Dense{randFloat32(rng, R, In)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := randFloat32(rng, R, Out)
			rounded := make([]*tensor.Dense, len(c.in))
			for i, d := range c.in {
				rounded[i] = roundedBF16(d)
			}
			y, grads := runProduct(t, c.build(BF16), r, c.in...)
			wantY, wantGrads := runProduct(t, c.build(Native), roundedBF16(r), rounded...)
			if !slices.Equal(y, wantY) {
				t.Errorf("y = %v\nwant %v (the rounded operands' product)", y, wantY)
			}
			for i := range grads {
				if !slices.Equal(grads[i], wantGrads[i]) {
					t.Errorf("gradient %d = %v\nwant %v", i, grads[i], wantGrads[i])
				}
			}
			if native, _ := runProduct(t, c.build(Native), r, c.in...); slices.Equal(y, native) {
				t.Error("the bfloat16 product is the native one: nothing was rounded")
			}
		})
	}
}

// TestBF16ProductsRefused: bfloat16 products of float64 values, or of a float16 weight, are errors.
func TestBF16ProductsRefused(t *testing.T) {
	g := G.NewGraph()
	x64 := G.NewMatrix(g, tensor.Float64, G.WithShape(2, 3), G.WithName("x64"))
	w64 := G.NewMatrix(g, tensor.Float64, G.WithShape(4, 3), G.WithName("w64"))
	x32 := G.NewMatrix(g, tensor.Float32, G.WithShape(2, 3), G.WithName("x32"))
	f16 := half.Matrix{Kind: half.Float16, Rows: 4, Cols: 3, Bits: make([]uint16, 12)}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"Linear float64", second(Linear(x64, w64, true, true, BF16)), "need float32 values"},
		{"LinearHalf float16", second(LinearHalf(x32, f16, true, BF16)), "bfloat16 products of a F16 weight"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, c.err, c.want)
		}
	}
}

func second[A, B any](_ A, b B) B { return b }

// TestFlexAttentionBF16: FlexAttention with bfloat16 HR projections gives, in both forms, bit for bit the
// native op's output and k, v gradients over HR features and W'_K, W'_V rounded to bfloat16; its weight
// gradients round their upstream operands too (dk_hr; dv_hr in the dense form), and the q gradient reads
// the HR keys held in bfloat16 between the passes, so those move, by about bfloat16's precision, except
// the union form's dW'_V, whose product has no rounded operand of its own.
func TestFlexAttentionBF16(t *testing.T) {
	f := newFlexFixture(0.6)
	in := make([]*tensor.Dense, len(f.inputs))
	for i, d := range f.inputs {
		in[i] = tensor.New(tensor.WithShape(d.Shape().Clone()...), tensor.WithBacking(toFloat32(d.Data().([]float64))))
	}
	rounded := slices.Clone(in)
	for _, i := range []int{3, 4, 5} { // wk, wv, hd
		rounded[i] = roundedBF16(in[i])
	}
	r := randFloat32(rand.New(rand.NewPCG(5, 6)), in[0].Shape()...)
	for _, dense := range []bool{false, true} {
		build := func(p Precision, hd, cells *tensor.Dense) opBuilder {
			plan := *f.plan
			plan.Dense, plan.Products = dense, p
			return func(n []*G.Node) (*G.Node, error) {
				g := n[0].Graph()
				return FlexAttention(n[0], n[1], n[2], n[3], n[4], G.NodeFromAny(g, hd, G.WithName("hd")),
					G.NodeFromAny(g, cells, G.WithName("cells")), &plan, true)
			}
		}
		y, grads := runProduct(t, build(BF16, in[5], in[6]), r, in[:5]...)
		wantY, wantGrads := runProduct(t, build(Native, rounded[5], in[6]), r, rounded[:5]...)
		if !slices.Equal(y, wantY) {
			t.Errorf("dense %v: the output is not the native op's over rounded operands", dense)
		}
		for i, name := range []string{"dq", "dk", "dv", "dW'_K", "dW'_V"} {
			moves := i == 0 || i == 3 || i == 4 && dense
			e := relErr32(grads[i], wantGrads[i])
			if same := slices.Equal(grads[i], wantGrads[i]); same == moves || e > 1e-2 {
				t.Errorf("dense %v: %s differs from the native op's by %.2g (bitwise equal: %v, want %v)", dense, name, e, same, !moves)
			}
		}
	}
}

// relErr32 is ‖got − want‖ / ‖want‖.
func relErr32(got, want []float32) float64 {
	var num, den float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		num, den = num+d*d, den+float64(want[i])*float64(want[i])
	}
	return math.Sqrt(num / den)
}
