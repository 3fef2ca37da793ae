package optim

import (
	"fmt"
	"math"
)

// GradNorm returns the global L2 norm of all gradients, sqrt(Σ g²), accumulated in float64 in parameter order
// and then element order, so the same gradients always give the same bits.
func GradNorm[T Float](params []Param[T]) float64 {
	var sum float64
	for _, p := range params {
		for _, g := range p.Grad {
			sum += float64(g) * float64(g)
		}
	}
	return math.Sqrt(sum)
}

// ClipGradNorm scales all gradients in place so that their global norm is at most maxNorm, as
// torch.nn.utils.clip_grad_norm_ does: coef = maxNorm/(norm+1e-6), applied only when coef < 1. It returns the
// norm before clipping. maxNorm ≤ 0 disables clipping (HF's max_grad_norm = 0) but still measures the norm.
// A NaN or infinite norm leaves the gradients untouched and returns ErrNonFinite: the caller skips the step.
func ClipGradNorm[T Float](params []Param[T], maxNorm float64) (float64, error) {
	norm := GradNorm(params)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("%w: %g", ErrNonFinite, norm)
	}
	if maxNorm <= 0 {
		return norm, nil
	}
	coef := maxNorm / (norm + 1e-6)
	if coef >= 1 {
		return norm, nil
	}
	c := T(coef)
	for _, p := range params {
		for i := range p.Grad {
			p.Grad[i] *= c
		}
	}
	return norm, nil
}
