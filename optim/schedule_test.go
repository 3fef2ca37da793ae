package optim

import (
	"errors"
	"math"
	"testing"
)

func TestLR(t *testing.T) {
	// Base 2, warm-up 10, total 110: the decay phase spans 100 steps, so step 60 is its midpoint.
	tests := []struct {
		kind string
		step int
		want float64
	}{
		{"constant", 0, 2}, {"constant", 5, 2}, {"constant", 110, 2},
		{"constant_with_warmup", 0, 0}, {"constant_with_warmup", 5, 1}, {"constant_with_warmup", 10, 2}, {"constant_with_warmup", 110, 2},
		{"linear", 0, 0}, {"linear", 1, 0.2}, {"linear", 9, 1.8}, {"linear", 10, 2}, {"linear", 60, 1}, {"linear", 85, 0.5}, {"linear", 110, 0},
		{"cosine", 0, 0}, {"cosine", 5, 1}, {"cosine", 10, 2}, {"cosine", 60, 1},
		{"cosine", 35, 1 + math.Sqrt2/2}, // ½·(1 + cos(π/4))·2
		{"cosine", 85, 1 - math.Sqrt2/2}, // ½·(1 + cos(3π/4))·2
		{"cosine", 110, 0},
	}
	for _, tt := range tests {
		got, err := LR(tt.kind, 2, tt.step, 10, 110)
		if err != nil {
			t.Fatalf("LR(%s, step %d): %v", tt.kind, tt.step, err)
		}
		if math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("LR(%s, step %d) = %.17g; want %.17g", tt.kind, tt.step, got, tt.want)
		}
	}
}

func TestLRWithoutWarmup(t *testing.T) {
	tests := []struct {
		kind      string
		step, tot int
		want      float64
	}{
		{"linear", 0, 4, 1}, {"linear", 1, 4, 0.75}, {"linear", 4, 4, 0},
		{"cosine", 0, 4, 1}, {"cosine", 2, 4, 0.5}, {"cosine", 4, 4, 0},
		{"cosine", 0, 1, 1}, // a one-step run starts at the base rate
	}
	for _, tt := range tests {
		got, err := LR(tt.kind, 1, tt.step, 0, tt.tot)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-tt.want) > 1e-15 {
			t.Errorf("LR(%s, step %d of %d) = %g; want %g", tt.kind, tt.step, tt.tot, got, tt.want)
		}
	}
}

func TestLRErrors(t *testing.T) {
	tests := []struct {
		name                string
		kind                string
		step, warmup, total int
	}{
		{"unknown kind", "polynomial", 1, 0, 10},
		{"empty kind", "", 1, 0, 10},
		{"negative step", "cosine", -1, 0, 10},
		{"step past the end", "cosine", 11, 0, 10},
		{"negative warmup", "linear", 1, -1, 10},
		{"no steps", "linear", 0, 0, 0},
	}
	for _, tt := range tests {
		if _, err := LR(tt.kind, 1, tt.step, tt.warmup, tt.total); !errors.Is(err, ErrSchedule) {
			t.Errorf("%s: err = %v; want ErrSchedule", tt.name, err)
		}
	}
}

func TestWarmupSteps(t *testing.T) {
	tests := []struct {
		ratio        float64
		steps, total int
		want         int
	}{
		{0.03, 0, 577, 18}, // ceil(17.31): the official recipe's ≈17-step warm-up
		{0.03, 0, 100, 3},
		{0.07, 0, 100, 8}, // 100·0.07 = 7.000000000000001, so HF (Python) gives 8 too
		{0.5, 7, 100, 7},
		{0, 0, 100, 0},
		{1, 0, 100, 100},
	}
	for _, tt := range tests {
		if got := WarmupSteps(tt.ratio, tt.steps, tt.total); got != tt.want {
			t.Errorf("WarmupSteps(%g, %d, %d) = %d; want %d", tt.ratio, tt.steps, tt.total, got, tt.want)
		}
	}
}
