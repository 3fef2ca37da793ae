package optim

import (
	"math"
	"testing"
)

// linearGrad is the gradient of the mean over tokens of ½·(w·x_j − y_j)²: (1/n)·Σ_j (w·x_j − y_j)·x_j.
func linearGrad(w []float64, xs [][]float64, ys []float64) []float64 {
	g := make([]float64, len(w))
	for j, x := range xs {
		r := -ys[j]
		for i := range w {
			r += w[i] * x[i]
		}
		for i := range g {
			g[i] += r * x[i] / float64(len(xs))
		}
	}
	return g
}

func tokens(n, seed int) ([][]float64, []float64) {
	xs, ys := make([][]float64, n), make([]float64, n)
	for j := range xs {
		xs[j] = []float64{math.Sin(float64(seed + 3*j)), math.Cos(float64(seed + 5*j)), 1}
		ys[j] = math.Sin(float64(seed*7 + j))
	}
	return xs, ys
}

// TestAccumulatorEqualsLargeBatch: micro-batches of 3, 5 and 2 tokens, combined by token weight, give the
// gradient of the batch of all 10 tokens; with equal counts so does the plain mean.
func TestAccumulatorEqualsLargeBatch(t *testing.T) {
	w := []float64{0.3, -0.7, 0.1}
	for _, tt := range []struct {
		name   string
		counts []int
		plain  bool // pass tokens = 1: the plain mean over micro-batches
	}{
		{"unequal counts, token-weighted", []int{3, 5, 2}, false},
		{"equal counts, token-weighted", []int{4, 4, 4}, false},
		{"equal counts, plain mean", []int{4, 4, 4}, true},
	} {
		var acc Accumulator[float64]
		var allX [][]float64
		var allY []float64
		p := []Param[float64]{{Name: "w", Shape: []int{3}, Value: w, Grad: make([]float64, 3)}}
		for k, n := range tt.counts {
			xs, ys := tokens(n, 10*k)
			allX, allY = append(allX, xs...), append(allY, ys...)
			copy(p[0].Grad, linearGrad(w, xs, ys))
			weight := n
			if tt.plain {
				weight = 1
			}
			if err := acc.Add(p, weight); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := acc.Finish(p); err != nil {
			t.Fatal(err)
		}
		want := linearGrad(w, allX, allY)
		for i := range want {
			if math.Abs(p[0].Grad[i]-want[i]) > 1e-15 {
				t.Errorf("%s: grad[%d] = %.17g; want %.17g", tt.name, i, p[0].Grad[i], want[i])
			}
		}
	}
}

// TestAccumulatorOneMicroBatchIsIdentity: k = 1 gives back the gradient bit for bit.
func TestAccumulatorOneMicroBatchIsIdentity(t *testing.T) {
	g := []float32{0.1, -3.7e-5, 1e30, 7}
	p := []Param[float32]{{Name: "w", Shape: []int{4}, Value: make([]float32, 4), Grad: append([]float32(nil), g...)}}
	var acc Accumulator[float32]
	if err := acc.Add(p, 17); err != nil {
		t.Fatal(err)
	}
	clear(p[0].Grad)
	n, err := acc.Finish(p)
	if err != nil || n != 17 {
		t.Fatalf("Finish = %d, %v; want 17, nil", n, err)
	}
	for i := range g {
		if math.Float32bits(p[0].Grad[i]) != math.Float32bits(g[i]) {
			t.Errorf("grad[%d] = %v; want %v", i, p[0].Grad[i], g[i])
		}
	}
}

// TestAccumulatorSkipsEmptyMicroBatch: a micro-batch with no supervised tokens (NaN gradient) is ignored, and
// a step with no tokens at all is an error.
func TestAccumulatorSkipsEmptyMicroBatch(t *testing.T) {
	p := []Param[float64]{{Name: "w", Shape: []int{1}, Value: []float64{0}, Grad: []float64{2}}}
	var acc Accumulator[float64]
	if err := acc.Add(p, 3); err != nil {
		t.Fatal(err)
	}
	p[0].Grad[0] = math.NaN()
	if err := acc.Add(p, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.Finish(p); err != nil || p[0].Grad[0] != 2 {
		t.Errorf("Finish: grad %g, err %v; want 2, nil", p[0].Grad[0], err)
	}
	if _, err := acc.Finish(p); err == nil {
		t.Error("Finish with no tokens = nil error; want an error")
	}
}

func TestAccumulatorRefusesChangedSet(t *testing.T) {
	mk := func(name string, n int) []Param[float64] {
		return []Param[float64]{{Name: name, Shape: []int{n}, Value: make([]float64, n), Grad: make([]float64, n)}}
	}
	for _, tt := range []struct {
		name string
		next []Param[float64]
	}{
		{"renamed", mk("v", 2)},
		{"resized", mk("w", 3)},
		{"extra", append(mk("w", 2), mk("v", 1)...)},
	} {
		var acc Accumulator[float64]
		if err := acc.Add(mk("w", 2), 1); err != nil {
			t.Fatal(err)
		}
		if err := acc.Add(tt.next, 1); err == nil {
			t.Errorf("%s: Add = nil; want an error", tt.name)
		}
	}
	var acc Accumulator[float64]
	if err := acc.Add(mk("w", 2), -1); err == nil {
		t.Error("Add with negative tokens = nil; want an error")
	}
}

// TestAccumulatorReduce: two accumulators whose sums are combined by Reduce (a sum over both, as an
// all-reduce gives every process) finish with the token-weighted mean of all their micro-batches, the
// gradient one accumulator of every micro-batch gives.
func TestAccumulatorReduce(t *testing.T) {
	grads := [][]float64{{1, 2, 3}, {4, 5, 6}, {-1, 0, 1}}
	tokens := []int{3, 1, 2}
	param := func(g []float64) []Param[float64] {
		return []Param[float64]{{Name: "w", Shape: []int{3}, Value: make([]float64, 3), Grad: append([]float64(nil), g...)}}
	}
	var whole Accumulator[float64]
	for i, g := range grads {
		if err := whole.Add(param(g), tokens[i]); err != nil {
			t.Fatal(err)
		}
	}
	want := param(nil)
	want[0].Grad = make([]float64, 3)
	if _, err := whole.Finish(want); err != nil {
		t.Fatal(err)
	}
	var a, b Accumulator[float64]
	a.Add(param(grads[0]), tokens[0])
	b.Add(param(grads[1]), tokens[1])
	b.Add(param(grads[2]), tokens[2])
	other := append([]float64(nil), b.sum["w"]...)
	mine := append([]float64(nil), a.sum["w"]...)
	sumWith := func(x []float64) func([]float64) error {
		return func(buf []float64) error {
			for i := range buf {
				buf[i] += x[i]
			}
			return nil
		}
	}
	got := param(make([]float64, 3))
	if err := a.Reduce(got, 6, sumWith(other)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Finish(got); err != nil {
		t.Fatal(err)
	}
	if err := b.Reduce(param(make([]float64, 3)), 6, sumWith(mine)); err != nil {
		t.Fatal(err)
	}
	for i := range want[0].Grad {
		if math.Abs(got[0].Grad[i]-want[0].Grad[i]) > 1e-12 {
			t.Errorf("gradient[%d] = %v after Reduce; want %v", i, got[0].Grad[i], want[0].Grad[i])
		}
	}
}
