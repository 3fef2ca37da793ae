package ops

import (
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
)

// releasingDevice runs the CPU's arithmetic and counts what it is told to free.
type releasingDevice struct {
	freed int
	saved []*Saved
}

func (d *releasingDevice) Run(k Kernel, in []G.Value) (G.Value, error) { return k.RunOnCPU(in) }
func (d *releasingDevice) Free(G.Value)                                { d.freed++ }
func (d *releasingDevice) FreeSaved(s *Saved)                          { d.saved = append(d.saved, s) }

// TestPlanReleases plans the releases of a small training graph (two attention heads over a linear layer
// whose input two branches read, a residual, the cross-entropy, Gorgonia's backward pass with its sums),
// on a releasing device and on an arena, and checks the plan against the graph: every value an operation
// frees is one of this package's outputs, not a view, not kept, read by no node and no view of it after
// that operation, and freed once; every other such value is kept or has no operation of this package
// after its last read; each saved state is freed once, by the last kernel that shares it. The graph then
// runs to the CPU's loss without releases.
func TestPlanReleases(t *testing.T) {
	for _, on := range []string{"device", "arena"} {
		t.Run(on, func(t *testing.T) {
			g := G.NewGraph()
			dev := &releasingDevice{}
			if on == "device" {
				AttachDevice(g, dev)
			} else {
				Attach(g, NewArena())
			}
			loss, keep := releaseGraph(t, g)
			if err := PlanReleases(g, keep...); err != nil {
				t.Fatal(err)
			}
			checkPlan(t, g, keep)
			vm := G.NewTapeMachine(g, G.WithEngine(Engine(arenaOf(g))))
			defer vm.Close()
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			if want := releaseGraphLoss(t); scalarOf(loss.Value()) != want {
				t.Errorf("loss %v with releases, %v without", scalarOf(loss.Value()), want)
			}
			if on == "device" && (dev.freed == 0 || len(dev.saved) != 2) {
				t.Errorf("the device freed %d values and %d saved states; want some, and 2 (attention, cross-entropy)", dev.freed, len(dev.saved))
			}
		})
	}
}

// releaseGraph builds the test's graph on g: its loss, and the nodes read after it runs (the loss and the
// weights' gradients).
func releaseGraph(t *testing.T, g *G.ExprGraph) (*G.Node, G.Nodes) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	lay := Layout{B: 1, N: 5, Lens: []int{5}, Heads: 2, HeadDim: 2}
	x := G.NodeFromAny(g, randDense(rng, 1, 5, 4), G.WithName("x"))
	w := G.NodeFromAny(g, randDense(rng, 0.5, 4, 4), G.WithName("w"))
	wo := G.NodeFromAny(g, randDense(rng, 0.5, 7, 4), G.WithName("wo"))
	must := func(n *G.Node, err error) *G.Node {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	h := must(Linear(x, w, false, true, Native)) // read by q, k, v and the residual: its gradient is a sum
	q, k := must(GELU(h)), must(AddBias(h, G.NodeFromAny(g, randDense(rng, 1, 4), G.WithName("b")), true, false))
	a := must(Attention(q, k, h, lay))
	r := must(Add(a, h))
	loss := must(CrossEntropy(must(Linear(r, wo, true, true, Native)), []int{1, 0, 6, 3, 2}))
	grads, err := G.Grad(loss, w, wo)
	if err != nil {
		t.Fatal(err)
	}
	return loss, append(G.Nodes{loss}, grads...)
}

// releaseGraphLoss is the test graph's loss without a device or an arena.
func releaseGraphLoss(t *testing.T) float64 {
	g := G.NewGraph()
	loss, _ := releaseGraph(t, g)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return scalarOf(loss.Value())
}

// checkPlan checks PlanReleases' plan of g against its nodes in the machine's order.
func checkPlan(t *testing.T, g *G.ExprGraph, keep G.Nodes) {
	t.Helper()
	order, err := machineOrder(g)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[*G.Node]int{}
	for i, n := range order {
		pos[n] = i
	}
	// the node whose memory a node's value is: itself, or what an Unpack's input is
	memOf := func(n *G.Node) *G.Node {
		for {
			op, ok := n.Op().(*fnOp)
			if !ok {
				return n
			}
			if _, unpack := op.args.(UnpackArgs); !unpack {
				return n
			}
			n = childrenOf(n)[0]
		}
	}
	lastRead := map[*G.Node]int{} // by memory: the last position that reads it or a view of it
	for i, n := range order {
		for _, c := range childrenOf(n) {
			lastRead[memOf(c)] = i
		}
	}
	freedBy := map[*G.Node]int{}
	lastOp, savers := -1, map[*Saved][]int{}
	for i, n := range order {
		op, ok := n.Op().(*fnOp)
		if !ok {
			continue
		}
		lastOp = i
		if s := savedOf(op.args); s != nil {
			savers[s] = append(savers[s], i)
		}
		for _, f := range op.free {
			fop, ok := f.Op().(*fnOp)
			switch {
			case !ok || fop.view:
				t.Errorf("%v frees %v, not an output of this package's operations", n, f)
			case slices.ContainsFunc(keep, func(k *G.Node) bool { return memOf(k) == f }):
				t.Errorf("%v frees %v, which is kept", n, f)
			case lastRead[f] > i:
				t.Errorf("%v (at %d) frees %v, read at %d", n, i, f, lastRead[f])
			}
			if at, twice := freedBy[f]; twice {
				t.Errorf("%v freed at %d and at %d", f, at, i)
			}
			freedBy[f] = i
		}
	}
	for _, n := range order {
		op, ok := n.Op().(*fnOp)
		if !ok || op.view {
			continue
		}
		_, freed := freedBy[n]
		kept := slices.ContainsFunc(keep, func(k *G.Node) bool { return memOf(k) == n })
		if !freed && !kept && max(lastRead[n], pos[n]) < lastOp {
			t.Errorf("%v (last read at %d) is never freed", n, lastRead[n])
		}
	}
	for s, at := range savers {
		var by []int
		for _, i := range at {
			if order[i].Op().(*fnOp).saved == s {
				by = append(by, i)
			}
		}
		if len(by) != 1 || by[0] != at[len(at)-1] {
			t.Errorf("a saved state shared by the kernels at %v is freed by those at %v; want the last", at, by)
		}
	}
	if len(freedBy) == 0 {
		t.Error("nothing is freed")
	}
}
