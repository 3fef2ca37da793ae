package ops

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestVectorKernelsMatchGo runs AddTo, mulBy and recipOnePlus with the vector kernels and with the Go
// loops, at lengths around the 16 lanes (the masked tail included), on ordinary and special values (zeros,
// subnormals, huge values, Inf, NaN), and wants the same bits; the elements past the end stay untouched.
func TestVectorKernelsMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -3e-39, 3e38, -3e38, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -1}
	value := func(i int) float32 {
		if i%7 == 0 {
			return special[r.IntN(len(special))]
		}
		return float32(r.NormFloat64() * 4)
	}
	kernels := []struct {
		name string
		run  func(dst, src []float32)
	}{
		{"AddTo", AddTo[float32]},
		{"mulBy", mulBy[float32]},
		{"recipOnePlus", func(dst, _ []float32) { recipOnePlus(dst) }},
	}
	for _, k := range kernels {
		for _, n := range []int{1, 5, 15, 16, 17, 31, 32, 33, 100, 128} {
			dst, src := make([]float32, n+3), make([]float32, n)
			for i := range dst {
				dst[i] = value(i)
			}
			for i := range src {
				src[i] = value(i + 3)
			}
			got, want := append([]float32(nil), dst...), append([]float32(nil), dst...)
			k.run(got[:n], src)
			vectorKernels = false
			k.run(want[:n], src)
			vectorKernels = hasAVX512
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("%s, n %d: element %d is %v; the Go loop gives %v", k.name, n, i, got[i], want[i])
				}
			}
		}
	}
}
