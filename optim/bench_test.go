package optim

import "testing"

// BenchmarkAdamW times one AdamW update of a float32 parameter of 2²⁰ elements on one goroutine (the element
// loop: the vector kernel where the CPU has one, and the rest in Go).
func BenchmarkAdamW(b *testing.B) {
	const n = 1 << 20
	p := Param[float32]{Name: "w", Shape: []int{1024, 1024}, Value: make([]float32, n), Grad: make([]float32, n)}
	for i := range p.Grad {
		p.Grad[i] = float32(i%13) * 1e-3
	}
	o := NewAdamW[float32](0.9, 0.999, 1e-8, 0.01)
	m, v := make([]float32, n), make([]float32, n)
	b.SetBytes(4 * 4 * n)
	for range b.N {
		o.updateOne(p, m, v, 1e-4, 0.01, 0.1, 0.001)
	}
}
