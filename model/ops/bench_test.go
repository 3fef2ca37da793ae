package ops

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BenchmarkElementwise times the element-wise kernels at the bench model's shapes (B·N = 1280 rows, D 256,
// F 704), taking outputs from an arena as training does. Run with -cpu 1,2 to see the split over cores.
func BenchmarkElementwise(b *testing.B) {
	dense := func(shape ...int) G.Value {
		n := 1
		for _, s := range shape {
			n *= s
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(i%17)/8 - 1
		}
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	}
	const rows, D, F = 1280, 256, 704
	cos, sin := RopeTables(rows, 32, 10000)
	for _, bc := range []struct {
		name string
		do   doFunc
		in   []G.Value
	}{
		{"SwiGLU", swigluDo[float32], []G.Value{dense(rows, F), dense(rows, F)}},
		{"SwiGLUGradGate", swigluGradDo[float32](true), []G.Value{dense(rows, F), dense(rows, F), dense(rows, F)}},
		{"RMSNorm", rmsDo[float32](1e-5), []G.Value{dense(rows, D), dense(D)}},
		{"RMSNormGradX", rmsGradXDo[float32](1e-5), []G.Value{dense(rows, D), dense(D), dense(rows, D)}},
		{"RMSNormGradW", rmsGradWDo[float32](1e-5), []G.Value{dense(rows, D), dense(rows, D)}},
		{"RoPE", ropeDo[float32](cos, sin, 32, false), []G.Value{dense(rows, D)}},
		{"Add", addDo[float32], []G.Value{dense(rows, D), dense(rows, D)}},
		{"GELU", mapDo[float32](gelu), []G.Value{dense(rows, D)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := NewArena()
			for range b.N {
				if _, err := bc.do(m, bc.in); err != nil {
					b.Fatal(err)
				}
				m.Release()
			}
		})
	}
}

// BenchmarkSoftmax times the softmax of one attention row of the bench model (160 keys) and its backward.
func BenchmarkSoftmax(b *testing.B) {
	x, y := make([]float32, 160), make([]float32, 160)
	for i := range x {
		x[i] = float32(i%17)/8 - 1
	}
	b.Run("Forward", func(b *testing.B) {
		for range b.N {
			copy(y, x)
			softmaxSum(y)
		}
	})
	b.Run("Backward", func(b *testing.B) {
		for range b.N {
			copy(y, x)
			softmaxBackward(x, y, 0.1)
		}
	})
}

// BenchmarkFlexAttention times one FlexAttention layer's forward and backward at the bench model's shapes (8
// samples of 160 rows, 8 heads of 32, 576 HR tokens in 6×6 cells, the 24 answer rows selecting 4 cells each,
// as topk at ratio 0.1 does; rows of a sample pick from the same 22 cells, so that their union is about the
// 62% of the HR tokens (355 of 576) that `flextrain bench` sees), in the union form and in the dense form.
func BenchmarkFlexAttention(b *testing.B) {
	const B, N, H, dh, M, side, first, pool = 8, 160, 8, 32, 576, 6, 136, 22
	W := H * dh
	rng := rand.New(rand.NewPCG(1, 2))
	value := func(std float64, shape ...int) G.Value {
		d := randDense(rng, std, shape...)
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(toFloat32(d.Data().([]float64))))
	}
	cells := make([]float32, B*N*side*side)
	rows := make([][]int, B)
	for s := range B {
		cands := rng.Perm(side * side)[:pool]
		for r := first; r < N; r++ {
			rows[s] = append(rows[s], r)
			for _, i := range rng.Perm(pool)[:4] {
				cells[(s*N+r)*side*side+cands[i]] = 1
			}
		}
	}
	cos, sin := RopeTables(M, dh, 10000)
	lens := []int{N, N, N, N, N, N, N, N}
	in := []G.Value{value(1, B*N, W), value(1, B*N, W), value(1, B*N, W), value(0.05, W, W), value(0.05, W, W),
		value(1, B*M, W), tensor.New(tensor.WithShape(B*N, side*side), tensor.WithBacking(cells)), value(1, B*N, W)}
	for _, dense := range []bool{false, true} {
		name := map[bool]string{false: "union", true: "dense"}[dense]
		b.Run(name, func(b *testing.B) {
			plan := &FlexPlan{Layout: Layout{B: B, N: N, Lens: lens, Heads: H, HeadDim: dh}, Alpha: 1, Rows: rows, M: M,
				Cells: CellGrid{G: side, Zg: 24}, Dense: dense}
			for range B {
				plan.RopeCos, plan.RopeSin = append(plan.RopeCos, cos), append(plan.RopeSin, sin)
			}
			m := NewArena()
			for range b.N {
				c := newFlexCache[float32](plan)
				if _, err := c.forward(m, in[:7]); err != nil {
					b.Fatal(err)
				}
				if _, err := c.backward(m, in); err != nil {
					b.Fatal(err)
				}
				m.Release()
			}
		})
	}
}

func toFloat32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}
