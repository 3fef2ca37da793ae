// Package optim holds the optimizer side of training as plain numbers in, plain numbers out: AdamW with
// decoupled weight decay (written out like llm.c), the learning-rate schedules of Hugging Face's Trainer,
// gradient clipping by global norm, and gradient accumulation over micro-batches.
//
// Nothing here knows about graphs or tensors: a parameter is a name, a shape and two flat slices (value and
// gradient), so the training loop can hand over whatever backs its tensors and a checkpoint can store the
// exported AdamW state as named tensors. Every function is deterministic: the same inputs give the same bits,
// which is what a bit-exact resume needs.
//
// One optimizer step of the loop looks like this:
//
//	acc.Add(params, tokens)                    // after each micro-batch's backward pass
//	acc.Finish(params)                         // params' Grad = token-weighted mean gradient
//	norm, err := optim.ClipGradNorm(params, cfg.MaxGradNorm)
//	if errors.Is(err, optim.ErrNonFinite) { /* skip the step */ }
//	lr, _ := optim.LR(cfg.LRSchedulerType, cfg.LearningRate, opt.Step, warmup, total)
//	err = opt.Update(params, lr)
package optim

import "errors"

// Float is the element type of parameters: float32 for training, float64 for numerical checks.
type Float interface{ ~float32 | ~float64 }

// Param is one named parameter tensor: its values and the gradient of the loss with respect to them, both
// flat in row-major order. Shape decides weight decay (only tensors of two or more dimensions decay).
type Param[T Float] struct {
	Name  string
	Shape []int
	Value []T
	Grad  []T
}

// Size is the number of elements the shape describes.
func (p Param[T]) Size() int {
	n := 1
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

// Sentinel errors callers distinguish.
var (
	// ErrNonFinite reports a gradient norm that is NaN or infinite: the loop should skip the step.
	ErrNonFinite = errors.New("optim: non-finite gradient norm")
	// ErrParams reports a parameter set that does not match the optimizer state or its own shapes.
	ErrParams = errors.New("optim: parameter mismatch")
)
