package ops

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRopeVectorKernelMatchesGo rotates rows of several heads with the vector kernel and with RopeRow
// head by head, both ways, and wants the same bits, ordinary values and special ones (zeros, subnormals,
// huge values, Inf, NaN) alike. A head size the kernel does not take falls back to the Go loop.
func TestRopeVectorKernelMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -3e-39, 3e38, -3e38, float32(math.Inf(-1)), float32(math.NaN())}
	value := func(i int) float32 {
		if i%13 == 0 {
			return special[r.IntN(len(special))]
		}
		return float32(r.NormFloat64())
	}
	for _, tc := range []struct{ heads, dh int }{{1, 32}, {8, 32}, {3, 64}, {2, 128}, {4, 16}, {2, 48}} {
		x, cos, sin := make([]float32, tc.heads*tc.dh), make([]float32, tc.dh), make([]float32, tc.dh)
		for i := range x {
			x[i] = value(i)
		}
		for i := range cos {
			cos[i], sin[i] = value(i+1), value(i+2)
		}
		for _, transpose := range []bool{false, true} {
			got, want := make([]float32, len(x)), make([]float32, len(x))
			ropeRow(got, x, cos, sin, tc.dh, transpose)
			for h := 0; h < len(x); h += tc.dh {
				RopeRow(want[h:h+tc.dh], x[h:h+tc.dh], cos, sin, transpose)
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("heads %d, dh %d, transpose %v: element %d is %v; the Go loop gives %v", tc.heads, tc.dh, transpose, i, got[i], want[i])
				}
			}
		}
	}
	if !ropeRowVector(make([]float32, 64), make([]float32, 64), make([]float32, 32), make([]float32, 32), 32, false) && hasAVX512 {
		t.Error("the vector kernel did not take a float32 row of dh 32")
	}
}
