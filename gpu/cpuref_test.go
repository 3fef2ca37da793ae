package gpu

import (
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// cpuOp runs a CPU op of model/ops on float32 inputs (values and shapes) and returns its output and, for
// the loss Σ out ⊙ up (or the output itself when it is a scalar), the gradients of every input: the
// reference that the twins and the device kernels are held to.
func cpuOp(t *testing.T, build func(in []*G.Node) (*G.Node, error), vals [][]float32, shapes [][]int, up []float32) ([]float32, [][]float32) {
	t.Helper()
	return cpuOpN(t, len(vals), build, vals, shapes, up)
}

// cpuOpN is cpuOp with the gradients of the first n inputs only (the others are constants of the op).
func cpuOpN(t *testing.T, n int, build func(in []*G.Node) (*G.Node, error), vals [][]float32, shapes [][]int, up []float32) ([]float32, [][]float32) {
	t.Helper()
	g := G.NewGraph()
	nodes := make([]*G.Node, len(vals))
	for i, v := range vals {
		d := tensor.New(tensor.WithShape(shapes[i]...), tensor.WithBacking(append([]float32(nil), v...)))
		nodes[i] = G.NodeFromAny(g, d, G.WithName(string(rune('a'+i))))
	}
	out, err := build(nodes)
	if err != nil {
		t.Fatal(err)
	}
	loss := out
	if !out.IsScalar() {
		u := G.NodeFromAny(g, tensor.New(tensor.WithShape(out.Shape()...), tensor.WithBacking(up)), G.WithName("up"))
		loss = G.Must(G.Sum(G.Must(G.HadamardProd(out, u))))
	}
	grads, err := G.Grad(loss, nodes[:n]...)
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	var y []float32
	switch v := out.Value().Data().(type) {
	case []float32:
		y = append(y, v...)
	case float32:
		y = []float32{v}
	}
	res := make([][]float32, len(grads))
	for i, gn := range grads {
		res[i] = append([]float32(nil), gn.Value().Data().([]float32)...)
	}
	return y, res
}
