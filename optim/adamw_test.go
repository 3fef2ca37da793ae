package optim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// TestAdamWHandComputed checks three steps of AdamW (lr 0.1, betas 0.9/0.999, eps 1e-8, λ 0.01) on a 2×2
// weight, which decays, and a 1-D bias, which does not. The expected values were computed outside Go with the
// formulas written out in float64. Step 1 by hand: m̂ = g and v̂ = g², so w −= lr·(g/(|g|+ε) + λ·w); for
// w = 1, g = 0.5: 1 − 0.1·(0.5/0.50000001 + 0.01) = 0.899000002.
func TestAdamWHandComputed(t *testing.T) {
	W := Param[float64]{Name: "w", Shape: []int{2, 2}, Value: []float64{1, -2, 0.5, 3}, Grad: make([]float64, 4)}
	b := Param[float64]{Name: "b", Shape: []int{2}, Value: []float64{0.1, -0.1}, Grad: make([]float64, 2)}
	gW := [][]float64{{0.5, -1, 0.25, 2}, {-0.25, 0.5, 0, 1}, {0.125, 0.5, -0.5, -1}}
	gb := [][]float64{{1, -0.5}, {0.5, 0.5}, {-2, 0.25}}
	wantW := [][]float64{
		{0.899000002, -1.898000001, 0.39950000399999985, 2.8970000005},
		{0.8714672987058464, -1.8694682973699033, 0.3320946823737161, 2.80088503720801},
		{0.8365529176159483, -1.8749065570609593, 0.36576603367700056, 2.7584136285244782},
	}
	wantB := [][]float64{
		{9.999999855958563e-10, -1.9999999711917127e-09},
		{-0.09321796170183891, -0.005263159789473618},
		{-0.07258225913794317, -0.030406589738742402},
	}
	opt := NewAdamW[float64](0.9, 0.999, 1e-8, 0.01)
	for s := range gW {
		copy(W.Grad, gW[s])
		copy(b.Grad, gb[s])
		if err := opt.Update([]Param[float64]{W, b}, 0.1); err != nil {
			t.Fatalf("step %d: %v", s+1, err)
		}
		assertClose(t, fmt.Sprintf("step %d w", s+1), W.Value, wantW[s], 1e-14)
		assertClose(t, fmt.Sprintf("step %d b", s+1), b.Value, wantB[s], 1e-14)
	}
	if opt.Step != 3 {
		t.Errorf("Step = %d; want 3", opt.Step)
	}
}

func assertClose(t *testing.T, what string, got, want []float64, rel float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(got[i] - want[i]); d > rel*math.Max(math.Abs(want[i]), 1e-300) {
			t.Errorf("%s[%d] = %.17g; want %.17g", what, i, got[i], want[i])
		}
	}
}

// TestAdamWDecayOnlyMatrices: with a zero gradient the moments stay 0, so a ≥2-D tensor moves by exactly
// lr·λ·w and a 1-D tensor does not move at all.
func TestAdamWDecayOnlyMatrices(t *testing.T) {
	tests := []struct {
		shape []int
		want  float32
	}{
		{[]int{4}, 2},           // 1-D: no decay
		{[]int{2, 2}, 2 - 0.02}, // 2 − 0.1·0.1·2
		{[]int{1, 2, 2}, 2 - 0.02},
	}
	for _, tt := range tests {
		p := Param[float32]{Name: "p", Shape: tt.shape, Value: []float32{2, 2, 2, 2}, Grad: make([]float32, 4)}
		opt := NewAdamW[float32](0.9, 0.999, 1e-8, 0.1)
		if err := opt.Update([]Param[float32]{p}, 0.1); err != nil {
			t.Fatal(err)
		}
		if got := p.Value[0]; math.Abs(float64(got-tt.want)) > 1e-6 {
			t.Errorf("shape %v: value = %v; want %v", tt.shape, got, tt.want)
		}
	}
}

// TestAdamWMinimisesQuadratic runs AdamW on f(w) = ½·Σ a_i·(w_i − c_i)² with a linearly decaying learning rate
// and expects w to end near c.
func TestAdamWMinimisesQuadratic(t *testing.T) {
	a := []float64{1, 10, 0.1, 3}
	c := []float64{3, -1, 0.5, 2}
	p := Param[float64]{Name: "w", Shape: []int{2, 2}, Value: make([]float64, 4), Grad: make([]float64, 4)}
	opt := NewAdamW[float64](0.9, 0.999, 1e-8, 0)
	const total = 3000
	for s := 0; s < total; s++ {
		for i := range p.Value {
			p.Grad[i] = a[i] * (p.Value[i] - c[i])
		}
		lr, err := LR("linear", 0.05, s, 0, total)
		if err != nil {
			t.Fatal(err)
		}
		if err := opt.Update([]Param[float64]{p}, lr); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c {
		if math.Abs(p.Value[i]-c[i]) > 1e-3 {
			t.Errorf("w[%d] = %g; want %g ± 1e-3", i, p.Value[i], c[i])
		}
	}
}

// TestAdamWFloat32MatchesFloat64: the float32 arithmetic follows the float64 one to float32 precision.
func TestAdamWFloat32MatchesFloat64(t *testing.T) {
	p32 := Param[float32]{Name: "w", Shape: []int{1, 3}, Value: []float32{0.5, -1, 2}, Grad: make([]float32, 3)}
	p64 := Param[float64]{Name: "w", Shape: []int{1, 3}, Value: []float64{0.5, -1, 2}, Grad: make([]float64, 3)}
	o32, o64 := NewAdamW[float32](0.9, 0.95, 1e-8, 0.1), NewAdamW[float64](0.9, 0.95, 1e-8, 0.1)
	for s := 0; s < 5; s++ {
		for i := range p32.Grad {
			g := float64(s-i) * 0.375 // exact in float32
			p32.Grad[i], p64.Grad[i] = float32(g), g
		}
		if err := o32.Update([]Param[float32]{p32}, 1e-2); err != nil {
			t.Fatal(err)
		}
		if err := o64.Update([]Param[float64]{p64}, 1e-2); err != nil {
			t.Fatal(err)
		}
	}
	for i := range p64.Value {
		if d := math.Abs(float64(p32.Value[i]) - p64.Value[i]); d > 1e-6 {
			t.Errorf("w[%d]: float32 %v, float64 %v; want within 1e-6", i, p32.Value[i], p64.Value[i])
		}
	}
}

// TestAdamWStateRoundTrip copies the exported state into a fresh optimizer, as a checkpoint would, and expects
// the next update to be bitwise identical to the uninterrupted one.
func TestAdamWStateRoundTrip(t *testing.T) {
	mk := func() []Param[float32] {
		return []Param[float32]{
			{Name: "a", Shape: []int{2, 3}, Value: []float32{0.1, 0.2, -0.3, 0.4, 0.5, -0.6}, Grad: make([]float32, 6)},
			{Name: "b", Shape: []int{3}, Value: []float32{1, 2, 3}, Grad: make([]float32, 3)},
		}
	}
	setGrads := func(ps []Param[float32], s int) {
		for k, p := range ps {
			for i := range p.Grad {
				p.Grad[i] = float32(math.Sin(float64(7*s + 3*k + i)))
			}
		}
	}
	ps := mk()
	a := NewAdamW[float32](0.9, 0.999, 1e-8, 0.05)
	for s := 0; s < 3; s++ {
		setGrads(ps, s)
		if err := a.Update(ps, 3e-3); err != nil {
			t.Fatal(err)
		}
	}
	// The "checkpoint": hyperparameters, step and copies of the moments, plus copies of the values.
	b := NewAdamW[float32](a.Beta1, a.Beta2, a.Eps, a.WeightDecay)
	b.Step, b.M, b.V = a.Step, cloneMap(a.M), cloneMap(a.V)
	qs := mk()
	for k := range qs {
		copy(qs[k].Value, ps[k].Value)
	}
	setGrads(ps, 3)
	setGrads(qs, 3)
	if err := a.Update(ps, 3e-3); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(qs, 3e-3); err != nil {
		t.Fatal(err)
	}
	for k := range ps {
		for i := range ps[k].Value {
			if g, w := math.Float32bits(qs[k].Value[i]), math.Float32bits(ps[k].Value[i]); g != w {
				t.Errorf("%s[%d] after resume = %#x; want %#x", ps[k].Name, i, g, w)
			}
		}
	}
	c := a.Clone()
	c.M["a"][0]++
	if c.M["a"][0] == a.M["a"][0] {
		t.Error("Clone shares its moments with the original")
	}
}

// TestAdamWRefusesMismatch: a parameter set that differs from the state, or from its own shapes, is refused
// with ErrParams and changes nothing.
func TestAdamWRefusesMismatch(t *testing.T) {
	p := func(name string, shape []int, n int) Param[float64] {
		return Param[float64]{Name: name, Shape: shape, Value: make([]float64, n), Grad: make([]float64, n)}
	}
	tests := []struct {
		name   string
		params []Param[float64]
	}{
		{"renamed", []Param[float64]{p("x", []int{2}, 2), p("c", []int{1, 3}, 3)}},
		{"resized", []Param[float64]{p("a", []int{3}, 3), p("b", []int{1, 3}, 3)}},
		{"missing", []Param[float64]{p("a", []int{2}, 2)}},
		{"extra", []Param[float64]{p("a", []int{2}, 2), p("b", []int{1, 3}, 3), p("c", []int{1}, 1)}},
		{"duplicate", []Param[float64]{p("a", []int{2}, 2), p("a", []int{2}, 2)}},
		{"shape disagrees with data", []Param[float64]{p("a", []int{2}, 2), p("b", []int{2, 3}, 3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := NewAdamW[float64](0.9, 0.999, 1e-8, 0)
			if err := opt.Update([]Param[float64]{p("a", []int{2}, 2), p("b", []int{1, 3}, 3)}, 1e-3); err != nil {
				t.Fatal(err)
			}
			before := opt.Clone()
			err := opt.Update(tt.params, 1e-3)
			if !errors.Is(err, ErrParams) {
				t.Fatalf("Update = %v; want ErrParams", err)
			}
			if opt.Step != before.Step {
				t.Errorf("Step = %d after a refused update; want %d", opt.Step, before.Step)
			}
		})
	}
}

func TestAdamWRefusesBadHyperparameters(t *testing.T) {
	tests := []struct {
		name string
		opt  *AdamW[float64]
		lr   float64
	}{
		{"beta1 = 1", NewAdamW[float64](1, 0.999, 1e-8, 0), 1e-3},
		{"beta2 < 0", NewAdamW[float64](0.9, -0.1, 1e-8, 0), 1e-3},
		{"eps = 0", NewAdamW[float64](0.9, 0.999, 0, 0), 1e-3},
		{"negative decay", NewAdamW[float64](0.9, 0.999, 1e-8, -1), 1e-3},
		{"NaN lr", NewAdamW[float64](0.9, 0.999, 1e-8, 0), math.NaN()},
		{"negative lr", NewAdamW[float64](0.9, 0.999, 1e-8, 0), -1},
		{"zero value", &AdamW[float64]{}, 1e-3},
	}
	for _, tt := range tests {
		p := Param[float64]{Name: "w", Shape: []int{1}, Value: []float64{1}, Grad: []float64{1}}
		if err := tt.opt.Update([]Param[float64]{p}, tt.lr); err == nil {
			t.Errorf("%s: Update = nil; want an error", tt.name)
		}
		if p.Value[0] != 1 {
			t.Errorf("%s: value = %g after a refused update; want 1", tt.name, p.Value[0])
		}
	}
}

// TestAdamWChunksMatchWholeUpdate updates parameters longer than a chunk, on one goroutine and on four, and
// wants the bits of updateOne over each whole parameter: the split must cover every element exactly once.
func TestAdamWChunksMatchWholeUpdate(t *testing.T) {
	mk := func() []Param[float32] {
		r := rand.New(rand.NewPCG(1, 1))
		var ps []Param[float32]
		for i, n := range []int{3*chunk + 5, 17, chunk} {
			p := Param[float32]{Name: fmt.Sprint("p", i), Shape: []int{n, 1}, Value: make([]float32, n), Grad: make([]float32, n)}
			for j := range n {
				p.Value[j], p.Grad[j] = float32(r.NormFloat64()), float32(r.NormFloat64())
			}
			ps = append(ps, p)
		}
		return ps
	}
	want := mk()
	ref := NewAdamW[float32](0.9, 0.999, 1e-8, 0.1)
	for _, p := range want {
		m, v := make([]float32, len(p.Value)), make([]float32, len(p.Value))
		ref.updateOne(p, m, v, 1e-3, 0.1, 1-0.9, 1-0.999)
	}
	for _, procs := range []int{1, 4} {
		func() {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			got, o := mk(), NewAdamW[float32](0.9, 0.999, 1e-8, 0.1)
			if err := o.Update(got, 1e-3); err != nil {
				t.Fatal(err)
			}
			for i := range want {
				for j := range want[i].Value {
					if math.Float32bits(got[i].Value[j]) != math.Float32bits(want[i].Value[j]) {
						t.Fatalf("GOMAXPROCS %d: %s[%d] = %v; the whole update gives %v", procs, got[i].Name, j, got[i].Value[j], want[i].Value[j])
					}
				}
			}
		}()
	}
}

// TestAdamWVectorKernelMatchesGo runs the element loop on the vector kernel and in Go over the same values,
// ordinary and extreme (zeros, subnormals, huge gradients, infinities, NaN), and wants the same bits.
func TestAdamWVectorKernelMatchesGo(t *testing.T) {
	const n = 16*37 + 5
	r := rand.New(rand.NewPCG(4, 4))
	special := []float32{0, float32(math.Copysign(0, -1)), 1e-45, -3e-39, 1e30, -1e30, float32(math.Inf(1)), float32(math.NaN())}
	mk := func() (w, g, m, v []float32) {
		w, g, m, v = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range n {
			w[i] = float32(r.NormFloat64())
			g[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(20)-10)))
			m[i], v[i] = float32(r.NormFloat64()*1e-3), float32(r.Float64()*1e-4)
			if i%29 == 0 {
				g[i] = special[r.IntN(len(special))]
			}
		}
		return
	}
	k := adamwConsts[float32]{0.9, 0.1, 0.999, float32(1 - 0.999), 0.271, 0.00299, 1e-8, 3e-4, 0.01}
	w1, g1, m1, v1 := mk()
	w2, g2, m2, v2 := slices.Clone(w1), slices.Clone(g1), slices.Clone(m1), slices.Clone(v1)
	done := adamwBlocks(w1, g1, m1, v1, &k)
	if done == 0 {
		t.Skip("no vector kernel on this CPU")
	}
	k.update(w2[:done], g2[:done], m2[:done], v2[:done])
	for i := range done {
		for _, c := range []struct {
			name      string
			got, want float32
		}{{"w", w1[i], w2[i]}, {"m", m1[i], m2[i]}, {"v", v1[i], v2[i]}} {
			if math.Float32bits(c.got) != math.Float32bits(c.want) && !(c.got != c.got && c.want != c.want) {
				t.Fatalf("%s[%d] (g = %g): vector kernel %v, Go %v", c.name, i, g1[i], c.got, c.want)
			}
		}
	}
	if done != n&^15 {
		t.Errorf("vector kernel did %d of %d elements; want the whole blocks, %d", done, n, n&^15)
	}
}
