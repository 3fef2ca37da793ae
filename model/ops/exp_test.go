package ops

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x < 88.7; x += 0.0137 {
		want := math.Exp(float64(x))
		got := float64(expf(x))
		worst = math.Max(worst, math.Abs(got-want)/want)
	}
	if worst > 3e-7 {
		t.Errorf("expf relative error %.2e > 3e-7", worst)
	}
	for _, c := range []struct{ x, want float32 }{{float32(math.Inf(-1)), 0}, {-100, 0}, {0, 1}} {
		if got := expf(c.x); got != c.want {
			t.Errorf("expf(%v) = %v; want %v", c.x, got, c.want)
		}
	}
	if got := expf(100); !math.IsInf(float64(got), 1) {
		t.Errorf("expf(100) = %v; want +Inf", got)
	}
}

// TestExpfsMatchesExpf wants the vector exponential to give expf's bits on every lane, with and without the
// affine shift: ordinary values, the range edges, infinities and NaNs (which send their block to expf), at
// every length around the block.
func TestExpfsMatchesExpf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), expLow, expLow + 1e-5, nextDown(expLow), expHigh, nextUp(expHigh), -88, 88.7,
		float32(math.Inf(-1)), float32(math.Inf(1)), float32(math.NaN()), 1e-30, -1e-30, 0.5, -0.5}
	for _, tt := range []struct {
		name string
		gen  func(i int) float32
	}{
		{"softmax range", func(int) float32 { return -30 * rng.Float32() }},
		{"wide", func(int) float32 { return 200*rng.Float32() - 110 }},
		{"specials", func(i int) float32 { return special[i%len(special)] }},
		{"rounding ties", func(i int) float32 { return (float32(i%40) - 20 + 0.5) / log2e }},
	} {
		for _, n := range []int{0, 1, 15, 16, 17, 33, 64, 100, 1000} {
			src := make([]float32, n)
			for i := range src {
				src[i] = tt.gen(i)
			}
			for _, ab := range [][2]float32{{1, 0}, {-1.702, 0}, {1, -3.25}, {0.5, 2}} {
				dst := make([]float32, n)
				expfs(dst, src, ab[0], ab[1])
				for i, x := range src {
					want := expf(float32(x*ab[0]) + ab[1])
					if math.Float32bits(dst[i]) != math.Float32bits(want) && !(want != want && dst[i] != dst[i]) {
						t.Fatalf("%s, n=%d, a=%v b=%v: expfs(%v) = %v (%08x); expf gives %v (%08x)", tt.name, n, ab[0], ab[1], x,
							dst[i], math.Float32bits(dst[i]), want, math.Float32bits(want))
					}
				}
			}
		}
	}
}

// TestSigmoids wants sigmoids to agree with sigm bit for bit, in both element types.
func TestSigmoids(t *testing.T) {
	x := make([]float32, 77)
	for i := range x {
		x[i] = float32(i-38) / 3
	}
	s := make([]float32, len(x))
	sigmoids(s, x, 1.702)
	for i, v := range x {
		if want := sigm(float32(1.702) * v); s[i] != want {
			t.Fatalf("float32: σ(1.702·%v) = %v; want %v", v, s[i], want)
		}
	}
	x64, s64 := []float64{-3, 0, 2.5}, make([]float64, 3)
	sigmoids(s64, x64, 1)
	for i, v := range x64 {
		if want := sigm(v); s64[i] != want {
			t.Fatalf("float64: σ(%v) = %v; want %v", v, s64[i], want)
		}
	}
}

func nextUp(x float32) float32   { return math.Nextafter32(x, float32(math.Inf(1))) }
func nextDown(x float32) float32 { return math.Nextafter32(x, float32(math.Inf(-1))) }

func BenchmarkExp(b *testing.B) {
	x := make([]float32, 1024)
	for i := range x {
		x[i] = float32(i%64) / 8
	}
	b.Run("expf", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j := range x {
				x[j] = expf(x[j]) * 1e-30
			}
		}
	})
	b.Run("expfs", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			expfs(x, x, 1, 0)
			for j := range x {
				x[j] *= 1e-30
			}
		}
	})
	b.Run("math.Exp", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j := range x {
				x[j] = float32(math.Exp(float64(x[j]))) * 1e-30
			}
		}
	})
}
