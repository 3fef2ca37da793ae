package ops

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func BenchmarkTmpPlain(b *testing.B) {
	const B, N, H, dh = 8, 160, 8, 32
	W := H * dh
	rng := rand.New(rand.NewPCG(1, 2))
	value := func(std float64, shape ...int) G.Value {
		d := randDense(rng, std, shape...)
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(toFloat32(d.Data().([]float64))))
	}
	lens := []int{N, N, N, N, N, N, N, N}
	in := []G.Value{value(1, B*N, W), value(1, B*N, W), value(1, B*N, W), value(1, B*N, W)}
	lay := Layout{B: B, N: N, Lens: lens, Heads: H, HeadDim: dh}
	m := NewArena()
	for range b.N {
		st := &attnState{lay: lay}
		if _, err := attnForward[float32](m, st, in[:3], nil); err != nil {
			b.Fatal(err)
		}
		if _, err := attnBackward[float32](m, st, in); err != nil {
			b.Fatal(err)
		}
		m.Release()
	}
}
