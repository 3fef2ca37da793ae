package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
)

// randDense is a float64 tensor of N(0, std) entries.
func randDense(rng *rand.Rand, std float64, shape ...int) *tensor.Dense {
	d := newDense(tensor.Float64, shape...)
	for i := range d.Data().([]float64) {
		d.Data().([]float64)[i] = rng.NormFloat64() * std
	}
	return d
}

// opBuilder builds the op under test on input nodes.
type opBuilder func(in []*G.Node) (*G.Node, error)

// objective runs loss = Σ out ⊙ R for a fixed random R and returns it with the gradients of the inputs in wrt.
func objective(t *testing.T, build opBuilder, inputs []*tensor.Dense, wrt []int, r *tensor.Dense) (float64, []*tensor.Dense) {
	t.Helper()
	_, loss, grads := runObjective(t, build, inputs, wrt, r)
	return loss, grads
}

// runObjective is objective that also returns a copy of the op's output (nil when it is a scalar).
func runObjective(t *testing.T, build opBuilder, inputs []*tensor.Dense, wrt []int, r *tensor.Dense) (*tensor.Dense, float64, []*tensor.Dense) {
	t.Helper()
	g := G.NewGraph()
	nodes := make([]*G.Node, len(inputs))
	for i, in := range inputs {
		nodes[i] = G.NodeFromAny(g, in.Clone().(*tensor.Dense), G.WithName(string(rune('a'+i))))
	}
	out, err := build(nodes)
	if err != nil {
		t.Fatal(err)
	}
	var loss *G.Node
	if out.IsScalar() {
		loss = out
	} else {
		rn := G.NodeFromAny(g, r, G.WithName("r"))
		if loss, err = G.Sum(G.Must(G.HadamardProd(out, rn))); err != nil {
			t.Fatal(err)
		}
	}
	var grads G.Nodes
	if len(wrt) > 0 {
		var ws G.Nodes
		for _, i := range wrt {
			ws = append(ws, nodes[i])
		}
		if grads, err = G.Grad(loss, ws...); err != nil {
			t.Fatal(err)
		}
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	res := make([]*tensor.Dense, len(grads))
	for i, gn := range grads {
		res[i] = gn.Value().(*tensor.Dense).Clone().(*tensor.Dense)
	}
	var y *tensor.Dense // nil for a scalar output
	if d, ok := out.Value().(*tensor.Dense); ok {
		y = d.Clone().(*tensor.Dense)
	}
	return y, scalarOf(loss.Value()), res
}

func scalarOf(v G.Value) float64 {
	switch x := v.Data().(type) {
	case float64:
		return x
	case []float64:
		return x[0]
	}
	return math.NaN()
}

// gradCheck compares the op's gradients with central differences in float64 and fails above tol.
func gradCheck(t *testing.T, build opBuilder, inputs []*tensor.Dense, wrt []int, outShape []int, tol float64) {
	t.Helper()
	gradCheckEntries(t, build, inputs, wrt, outShape, tol, 0)
}

// gradCheckEntries is gradCheck on n entries of each input drawn at random, or on all of them when n ≤ 0.
func gradCheckEntries(t *testing.T, build opBuilder, inputs []*tensor.Dense, wrt []int, outShape []int, tol float64, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	if outShape == nil {
		outShape = []int{1} // a scalar output is its own objective
	}
	r := randDense(rng, 1, outShape...)
	_, grads := objective(t, build, inputs, wrt, r)
	const eps = 1e-6
	for gi, i := range wrt {
		x := inputs[i].Data().([]float64)
		got := grads[gi].Data().([]float64)
		entries := rng.Perm(len(x))
		if n > 0 {
			entries = entries[:min(n, len(x))]
		}
		worst := 0.0
		for _, j := range entries {
			orig := x[j]
			x[j] = orig + eps
			fp, _ := objective(t, build, inputs, nil, r)
			x[j] = orig - eps
			fm, _ := objective(t, build, inputs, nil, r)
			x[j] = orig
			num := (fp - fm) / (2 * eps)
			worst = math.Max(worst, math.Abs(num-got[j])/math.Max(1, math.Abs(num)))
		}
		t.Logf("input %d: worst error %.2e over %d entries", i, worst, len(entries))
		if worst > tol {
			t.Errorf("input %d: gradient differs from finite differences by %.2e > %.0e", i, worst, tol)
		}
	}
}

func TestOpGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const R, D, F = 5, 6, 4
	lay := Layout{B: 2, N: 4, Lens: []int{4, 3}, Heads: 2, HeadDim: 4}
	cos, sin := RopeTables(4, 4, 10000)
	src := []Source{{FromToken, 2}, {FromImage, 1}, {FromToken, 0}, Pad, {FromToken, 2}, {FromHR, 1}}
	full := Layout{B: 2, N: 4, Lens: []int{4, 3}, Heads: 2, HeadDim: 4, Full: true}
	allEmbed, allNorm := EmbedSpec{true, true, true}, NormSpec{true, true, true}
	cases := []struct {
		name   string
		build  opBuilder
		inputs []*tensor.Dense
		wrt    []int
		out    []int
	}{
		{"Linear", func(in []*G.Node) (*G.Node, error) { return Linear(in[0], in[1], true, true, Native) },
			[]*tensor.Dense{randDense(rng, 1, R, D), randDense(rng, 1, F, D)}, []int{0, 1}, []int{R, F}},
		{"AddBias", func(in []*G.Node) (*G.Node, error) { return AddBias(in[0], in[1], true, true) },
			[]*tensor.Dense{randDense(rng, 1, R, D), randDense(rng, 1, D)}, []int{0, 1}, []int{R, D}},
		{"GELU", func(in []*G.Node) (*G.Node, error) { return GELU(in[0]) },
			[]*tensor.Dense{randDense(rng, 1.5, R, D)}, []int{0}, []int{R, D}},
		{"SwiGLU", func(in []*G.Node) (*G.Node, error) { return SwiGLU(in[0], in[1]) },
			[]*tensor.Dense{randDense(rng, 1.5, R, D), randDense(rng, 1, R, D)}, []int{0, 1}, []int{R, D}},
		{"RMSNorm", func(in []*G.Node) (*G.Node, error) { return RMSNorm(in[0], in[1], 1e-5, true, true) },
			[]*tensor.Dense{randDense(rng, 1, R, D), randDense(rng, 1, D)}, []int{0, 1}, []int{R, D}},
		{"Rope", func(in []*G.Node) (*G.Node, error) { return Rope(in[0], cos, sin, 4) },
			[]*tensor.Dense{randDense(rng, 1, 8, 8)}, []int{0}, []int{8, 8}},
		{"Attention", func(in []*G.Node) (*G.Node, error) { return Attention(in[0], in[1], in[2], lay) },
			[]*tensor.Dense{randDense(rng, 1, 8, 8), randDense(rng, 1, 8, 8), randDense(rng, 1, 8, 8)}, []int{0, 1, 2}, []int{8, 8}},
		{"Assemble", func(in []*G.Node) (*G.Node, error) { return Assemble(in[0], in[1], in[2], src, true, true) },
			[]*tensor.Dense{randDense(rng, 1, 3, D), randDense(rng, 1, 2, D), randDense(rng, 1, 2, D)}, []int{0, 1}, []int{len(src), D}},
		{"AttentionFull", func(in []*G.Node) (*G.Node, error) { return Attention(in[0], in[1], in[2], full) },
			[]*tensor.Dense{randDense(rng, 1, 8, 8), randDense(rng, 1, 8, 8), randDense(rng, 1, 8, 8)}, []int{0, 1, 2}, []int{8, 8}},
		{"Reshape", func(in []*G.Node) (*G.Node, error) { return Reshape(in[0], 3, 8) },
			[]*tensor.Dense{randDense(rng, 1, 3, 2, 2, 2)}, []int{0}, []int{3, 8}},
		{"ClassPosEmbed", func(in []*G.Node) (*G.Node, error) { return ClassPosEmbed(in[0], in[1], in[2], 2, allEmbed) },
			[]*tensor.Dense{randDense(rng, 1, 6, D), randDense(rng, 1, D), randDense(rng, 1, 4, D)}, []int{0, 1, 2}, []int{8, D}},
		{"LayerNorm", func(in []*G.Node) (*G.Node, error) { return LayerNormOp(in[0], in[1], in[2], 1e-5, allNorm) },
			[]*tensor.Dense{randDense(rng, 1, R, D), randDense(rng, 1, D), randDense(rng, 1, D)}, []int{0, 1, 2}, []int{R, D}},
		{"QuickGELU", func(in []*G.Node) (*G.Node, error) { return QuickGELUOp(in[0]) },
			[]*tensor.Dense{randDense(rng, 1.5, R, D)}, []int{0}, []int{R, D}},
		{"GatherRows", func(in []*G.Node) (*G.Node, error) { return GatherRows(in[0], []int{1, 4, 1, 2}, true) },
			[]*tensor.Dense{randDense(rng, 1, R, D)}, []int{0}, []int{4, D}},
		{"CrossEntropy", func(in []*G.Node) (*G.Node, error) {
			return CrossEntropy(in[0], []int{1, llava.IgnoreIndex, 0, 3, llava.IgnoreIndex})
		},
			[]*tensor.Dense{randDense(rng, 2, R, 4)}, []int{0}, nil},
		{"Pools", func(in []*G.Node) (*G.Node, error) { return Pools(in[0], 3, true) },
			[]*tensor.Dense{randDense(rng, 1, 6, D)}, []int{0}, []int{4, D}},
		{"HeadsCrossEntropy", func(in []*G.Node) (*G.Node, error) {
			return HeadsCrossEntropy(in[0], [][]int{{1, 0, 2, 0, 1}, {llava.IgnoreIndex, 3, llava.IgnoreIndex, 0, llava.IgnoreIndex}}, []int{3, 4})
		},
			[]*tensor.Dense{randDense(rng, 2, R, 7)}, []int{0}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { gradCheck(t, c.build, c.inputs, c.wrt, c.out, 1e-7) })
	}
}

func TestPoolsAndHeadsCrossEntropy(t *testing.T) {
	g := G.NewGraph()
	x := G.NodeFromAny(g, tensor.New(tensor.WithShape(4, 2), tensor.WithBacking([]float64{1, 5, 3, 2, 0, 0, -1, -2})), G.WithName("x"))
	p, err := Pools(x, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	// Two heads side by side: logits [2, 2+1]; head 1 has one class, so its loss is 0 whatever the logits.
	l := G.NodeFromAny(g, tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float64{0, 0, 7, math.Log(3), 0, -4})), G.WithName("l"))
	loss, err := HeadsCrossEntropy(l, [][]int{{0, 0}, {0, llava.IgnoreIndex}}, []int{2, 1})
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Value().Data().([]float64), []float64{3, 5, 0, 0, 2, 3.5, -0.5, -1}; !slices.Equal(got, want) {
		t.Errorf("Pools = %v; want %v (maxima, then means)", got, want)
	}
	// Head 0: rows −log(1/2) and −log(3/4), mean (ln 2 + ln 4/3)/2.
	if got, want := scalarOf(loss.Value()), (math.Log(2)+math.Log(4.0/3))/2; math.Abs(got-want) > 1e-12 {
		t.Errorf("HeadsCrossEntropy = %v; want %v", got, want)
	}
	for _, bad := range []struct {
		targets [][]int
		sizes   []int
	}{{[][]int{{0, 0}}, []int{2, 1}}, {[][]int{{0, 2}, {0, 0}}, []int{2, 1}}, {[][]int{{0, 0}, {0, 0}}, []int{2, 2}}} {
		if _, err := HeadsCrossEntropy(l, bad.targets, bad.sizes); err == nil {
			t.Errorf("HeadsCrossEntropy(%v, %v): no error", bad.targets, bad.sizes)
		}
	}
	if _, err := Pools(x, 3, false); err == nil {
		t.Error("Pools over groups of 3 of 4 rows: no error")
	}
}
