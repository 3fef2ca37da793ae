package optim

import (
	"errors"
	"math"
	"testing"
)

// clipParams has global norm 13: sqrt(3² + 4² + 12²).
func clipParams() []Param[float64] {
	return []Param[float64]{
		{Name: "a", Shape: []int{2}, Value: make([]float64, 2), Grad: []float64{3, 4}},
		{Name: "b", Shape: []int{1, 1}, Value: make([]float64, 1), Grad: []float64{12}},
	}
}

func TestClipGradNorm(t *testing.T) {
	tests := []struct {
		name    string
		maxNorm float64
		scale   float64
	}{
		{"clipped", 1.3, 1.3 / (13 + 1e-6)},
		{"below the limit", 20, 1},
		{"at the limit", 13, 13 / (13 + 1e-6)}, // torch scales whenever max/(norm+1e-6) < 1
		{"disabled", 0, 1},
	}
	for _, tt := range tests {
		ps := clipParams()
		norm, err := ClipGradNorm(ps, tt.maxNorm)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if norm != 13 {
			t.Errorf("%s: norm = %g; want 13", tt.name, norm)
		}
		want := []float64{3 * tt.scale, 4 * tt.scale, 12 * tt.scale}
		got := []float64{ps[0].Grad[0], ps[0].Grad[1], ps[1].Grad[0]}
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-12 {
				t.Errorf("%s: grad %d = %.15g; want %.15g", tt.name, i, got[i], want[i])
			}
		}
	}
}

func TestClipGradNormFloat32AccumulatesInFloat64(t *testing.T) {
	// 4096 elements of 1e-3: in float64 the sum of squares is 4.096e-3 to 1e-16 and the norm 0.064.
	g := make([]float32, 4096)
	for i := range g {
		g[i] = 1e-3
	}
	p := []Param[float32]{{Name: "w", Shape: []int{4096}, Value: make([]float32, 4096), Grad: g}}
	norm, err := ClipGradNorm(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := 64 * float64(float32(1e-3))
	if math.Abs(norm-want) > 1e-15 {
		t.Errorf("norm = %.17g; want %.17g", norm, want)
	}
}

func TestClipGradNormNonFinite(t *testing.T) {
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		ps := clipParams()
		ps[1].Grad[0] = bad
		norm, err := ClipGradNorm(ps, 1)
		if !errors.Is(err, ErrNonFinite) {
			t.Errorf("grad %g: err = %v; want ErrNonFinite", bad, err)
		}
		if !math.IsNaN(norm) && !math.IsInf(norm, 1) {
			t.Errorf("grad %g: norm = %g; want NaN or +Inf", bad, norm)
		}
		if ps[0].Grad[0] != 3 || ps[0].Grad[1] != 4 {
			t.Errorf("grad %g: gradients changed to %v; want them untouched", bad, ps[0].Grad)
		}
	}
}
