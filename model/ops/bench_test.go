package ops

import (
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
		{"RoPE", ropeDo[float32](cos, sin, 32, false), []G.Value{dense(rows, D)}},
		{"Add", addDo[float32], []G.Value{dense(rows, D), dense(rows, D)}},
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
