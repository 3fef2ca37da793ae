package ops

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// naiveAttention is causal attention written out row by row, the oracle of the GEMM-based kernel.
func naiveAttention(lay Layout, q, k, v []float64) []float64 {
	W, dh := lay.Heads*lay.HeadDim, lay.HeadDim
	o := make([]float64, len(q))
	for b := 0; b < lay.B; b++ {
		for h := 0; h < lay.Heads; h++ {
			for r := 0; r < lay.N; r++ {
				nk := lay.keys(b, r)
				s := make([]float64, nk)
				for j := range s {
					for d := 0; d < dh; d++ {
						s[j] += q[(b*lay.N+r)*W+h*dh+d] * k[(b*lay.N+j)*W+h*dh+d]
					}
					s[j] /= math.Sqrt(float64(dh))
				}
				softmax(s)
				for j := range s {
					for d := 0; d < dh; d++ {
						o[(b*lay.N+r)*W+h*dh+d] += s[j] * v[(b*lay.N+j)*W+h*dh+d]
					}
				}
			}
		}
	}
	return o
}

// TestAttentionLongSequences checks the attention op against the row-by-row oracle at lengths beyond the
// GEMM kernels' tile sizes, with ragged samples.
func TestAttentionLongSequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		B, N, H, dh int
		lens        []int
	}{
		{1, 55, 4, 16, []int{55}}, {2, 70, 2, 8, []int{70, 41}}, {3, 130, 4, 32, []int{130, 3, 99}},
	} {
		lay := Layout{B: c.B, N: c.N, Lens: c.lens, Heads: c.H, HeadDim: c.dh}
		rows, W := c.B*c.N, c.H*c.dh
		q, k, v := randDense(rng, 1, rows, W), randDense(rng, 1, rows, W), randDense(rng, 1, rows, W)
		g := G.NewGraph()
		nodes := []*G.Node{G.NodeFromAny(g, q, G.WithName("q")), G.NodeFromAny(g, k, G.WithName("k")), G.NodeFromAny(g, v, G.WithName("v"))}
		out, err := Attention(nodes[0], nodes[1], nodes[2], lay)
		if err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		got := out.Value().(*tensor.Dense).Data().([]float64)
		want := naiveAttention(lay, q.Data().([]float64), k.Data().([]float64), v.Data().([]float64))
		worst := 0.0
		for i := range want {
			worst = math.Max(worst, math.Abs(got[i]-want[i]))
		}
		if worst > 1e-12 {
			t.Errorf("B %d N %d H %d dh %d: max |kernel − oracle| = %.3g", c.B, c.N, c.H, c.dh, worst)
		}
		vm.Close()
	}
}

// TestAttentionLongGradient checks the attention gradients against central differences at lengths beyond the
// GEMM kernels' tile sizes, with a ragged sample, on 60 entries of each of q, k and v.
func TestAttentionLongGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	const B, N, H, dh = 2, 89, 2, 4
	lay := Layout{B: B, N: N, Lens: []int{N, 37}, Heads: H, HeadDim: dh}
	build := func(in []*G.Node) (*G.Node, error) { return Attention(in[0], in[1], in[2], lay) }
	inputs := []*tensor.Dense{randDense(rng, 1, B*N, H*dh), randDense(rng, 1, B*N, H*dh), randDense(rng, 1, B*N, H*dh)}
	gradCheckEntries(t, build, inputs, []int{0, 1, 2}, []int{B * N, H * dh}, 1e-7, 60)
}
