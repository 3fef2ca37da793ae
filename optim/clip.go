package optim

import (
	"fmt"
	"math"
)

// GradNorm returns the global L2 norm of all gradients, sqrt(Σ g²), accumulated in float64 a chunk at a time
// on all cores and the chunks' sums added in parameter and element order, so the same gradients always give
// the same bits, whatever the number of cores.
func GradNorm[T Float](params []Param[T]) float64 {
	jobs := spans(params)
	parts := make([]float64, len(jobs))
	eachSpan(params, jobs, func(i int, p Param[T], lo, hi int) {
		var s float64
		for _, g := range p.Grad[lo:hi] {
			s += float64(g) * float64(g)
		}
		parts[i] = s
	})
	var sum float64
	for _, s := range parts { // in chunk order: the same bits however the cores took the chunks
		sum += s
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
	eachChunk(params, func(_ int, p Param[T], lo, hi int) {
		for i := range p.Grad[lo:hi] {
			p.Grad[lo+i] *= c
		}
	})
	return norm, nil
}
