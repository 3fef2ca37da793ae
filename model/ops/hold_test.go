package ops

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
)

// packingDevice runs the CPU's arithmetic and holds values in bfloat16 as a GPU does: Pack keeps the bits
// and Free fills the float32 value with NaN, so that an operation that read it after it was packed would
// spread NaN into the loss or the gradients.
type packingDevice struct {
	releasingDevice
	packs, unpacks int
}

func (d *packingDevice) Free(v G.Value) {
	d.freed++
	poison(v.Data())
}

func (d *packingDevice) Pack(v G.Value) (any, error) {
	d.packs++
	x := v.Data().([]float32)
	bits := make([]uint16, len(x))
	for i, f := range x {
		bits[i] = half.BFloat16.Round(f)
	}
	return bits, nil
}

func (d *packingDevice) Unpack(packed any, shape tensor.Shape) (G.Value, error) {
	d.unpacks++
	bits := packed.([]uint16)
	x := make([]float32, len(bits))
	half.BFloat16.Widen(x, bits)
	return tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(x)), nil
}

// holdGraph is a small float32 training graph on g: an RMSNorm, a linear layer whose output three
// branches read (GELU, a bias, attention's values), attention, a residual, a second RMSNorm, the logits and
// the cross-entropy, with Gorgonia's backward pass from the loss's gradient dloss. It returns the nodes by
// name, the weights' gradients, and the nodes read after it runs.
func holdGraph(t *testing.T, g *G.ExprGraph) (map[string]*G.Node, G.Nodes, G.Nodes) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	input := func(name string, std float64, shape ...int) *G.Node {
		x := toFloat32(randDense(rng, std, shape...).Data().([]float64))
		return G.NodeFromAny(g, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(x)), G.WithName(name))
	}
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	lay := Layout{B: 1, N: 5, Lens: []int{5}, Heads: 2, HeadDim: 2}
	x, wn, w, b := input("x", 1, 5, 4), input("wn", 1, 4), input("w", 0.5, 4, 4), input("b", 1, 4)
	wn2, wo := input("wn2", 1, 4), input("wo", 0.5, 7, 4)
	n := map[string]*G.Node{}
	n["norm"] = must(RMSNorm(x, wn, 1e-6, false, true))
	n["h"] = must(Linear(n["norm"], w, true, true, BF16))
	n["q"], n["k"] = must(GELU(n["h"])), must(AddBias(n["h"], b, true, true))
	n["attn"] = must(Attention(n["q"], n["k"], n["h"], lay))
	n["residual"] = must(Add(n["attn"], n["norm"]))
	n["norm2"] = must(RMSNorm(n["residual"], wn2, 1e-6, true, true))
	n["logits"] = must(Linear(n["norm2"], wo, true, true, BF16))
	n["loss"] = must(CrossEntropy(n["logits"], []int{1, 0, 6, 3, 2}))
	n["dloss"] = G.NodeFromAny(g, float32(1), G.WithName("dloss"))
	grads, err := G.Backpropagate(G.Nodes{n["loss"]}, G.Nodes{n["dloss"]}, G.Nodes{wn, w, b, wn2, wo})
	if err != nil {
		t.Fatal(err)
	}
	return n, grads, append(G.Nodes{n["loss"]}, grads...)
}

// TestPlanHolds plans the holds of the small training graph and runs it three ways: on a device that packs
// (and poisons what it frees), on the CPU (rounded in place), and without holds. The values held are those
// the backward pass reads through operations that take bfloat16 activations: the norms' outputs, the
// linear layer's output and attention's queries and keys; not the residual a norm's gradient reads, nor
// the logits the loss's gradient reads, nor the kept loss. Each is packed after its last forward read and
// widened before its first backward read. Both ways with holds give the same bits, and the gradients
// differ from the run without holds by bfloat16's rounding of the values held, no more.
func TestPlanHolds(t *testing.T) {
	g := G.NewGraph()
	n, _, keep := holdGraph(t, g)
	if err := PlanHolds(g, n["dloss"], keep...); err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for name, node := range n {
		if slices.ContainsFunc(packers(g), func(p *G.Node) bool { return slices.Contains(p.Op().(*fnOp).pack, node) }) {
			held[name] = true
		}
	}
	want := map[string]bool{"norm": true, "h": true, "q": true, "k": true, "norm2": true}
	if !maps.Equal(held, want) {
		t.Errorf("held %v, want %v", held, want)
	}
	checkHoldOrder(t, g, n["dloss"])

	dev := &packingDevice{}
	onDevice := runHoldGraph(t, dev, true)
	onCPU := runHoldGraph(t, nil, true)
	plain := runHoldGraph(t, nil, false)
	if dev.packs != len(want) || dev.unpacks != dev.packs {
		t.Errorf("the device packed %d values and unpacked %d; want %d", dev.packs, dev.unpacks, len(want))
	}
	differs := false
	for i := range plain {
		if !slices.Equal(onDevice[i], onCPU[i]) {
			t.Errorf("value %d: the device's holds give %v, the CPU's %v", i, onDevice[i], onCPU[i])
		}
		for j, x := range onCPU[i] {
			if d := math.Abs(float64(x - plain[i][j])); d > 0.05*(math.Abs(float64(plain[i][j]))+0.05) || math.IsNaN(d) {
				t.Errorf("value %d[%d]: %v with holds, %v without", i, j, x, plain[i][j])
			}
			differs = differs || x != plain[i][j]
		}
	}
	if !differs {
		t.Error("the holds changed no gradient: nothing read a rounded value")
	}
}

// runHoldGraph runs the test's graph on dev (nil: the CPU), with or without holds, and returns its loss and
// gradients' numbers.
func runHoldGraph(t *testing.T, dev Device, holds bool) [][]float32 {
	t.Helper()
	g := G.NewGraph()
	if dev != nil {
		AttachDevice(g, dev)
	}
	n, grads, keep := holdGraph(t, g)
	if dev != nil {
		if err := PlanReleases(g, keep...); err != nil {
			t.Fatal(err)
		}
	}
	if holds {
		if err := PlanHolds(g, n["dloss"], keep...); err != nil {
			t.Fatal(err)
		}
	}
	vm := G.NewTapeMachine(g, G.WithEngine(Engine(NewArena()))) // sums into new values, never into a freed one
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	out := [][]float32{{n["loss"].Value().Data().(float32)}}
	for _, gr := range grads {
		out = append(out, slices.Clone(gr.Value().Data().([]float32)))
	}
	return out
}

// checkHoldOrder checks that each held value is packed by an operation at or after its last forward read
// and widened by the first operation that reads it in the backward pass (from dloss on).
func checkHoldOrder(t *testing.T, g *G.ExprGraph, dloss *G.Node) {
	t.Helper()
	order, err := machineOrder(g)
	if err != nil {
		t.Fatal(err)
	}
	back := map[*G.Node]bool{dloss: true}
	packedAt, unpackedAt := map[*G.Node]int{}, map[*G.Node]int{}
	for i, n := range order {
		for _, c := range childrenOf(n) {
			back[n] = back[n] || back[c]
		}
		if op, ok := n.Op().(*fnOp); ok {
			for _, v := range op.pack {
				packedAt[v] = i
			}
			for _, v := range op.unpack {
				unpackedAt[v] = i
			}
		}
	}
	for i, n := range order {
		for _, c := range childrenOf(n) {
			p, held := packedAt[c]
			switch {
			case !held:
			case !back[n] && i > p:
				t.Errorf("%v reads %v at %d, after it was packed at %d", n, c, i, p)
			case back[n] && i < unpackedAt[c]:
				t.Errorf("%v reads %v at %d, before it is widened at %d", n, c, i, unpackedAt[c])
			}
		}
	}
	if len(unpackedAt) != len(packedAt) {
		t.Errorf("%d values packed, %d widened", len(packedAt), len(unpackedAt))
	}
}

// packers are the operations of g that pack a value.
func packers(g *G.ExprGraph) G.Nodes {
	var out G.Nodes
	for _, n := range g.AllNodes() {
		if op, ok := n.Op().(*fnOp); ok && len(op.pack) > 0 {
			out = append(out, n)
		}
	}
	return out
}
