package ops

import (
	"math"
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
	b.Run("math.Exp", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for j := range x {
				x[j] = float32(math.Exp(float64(x[j]))) * 1e-30
			}
		}
	})
}
