package optim

import (
	"fmt"
	"math"
)

// AdamW is Adam with decoupled weight decay (Loshchilov & Hutter), in the form llm.c writes it:
//
//	m = β1·m + (1−β1)·g
//	v = β2·v + (1−β2)·g²
//	m̂ = m/(1−β1^t),  v̂ = v/(1−β2^t)
//	w = w − lr·(m̂/(√v̂+ε) + λ·w)        λ only for tensors of ≥2 dimensions, as nanoGPT and HF group them
//
// The state (Step, M, V) is exported so a checkpoint can hold it; copying it into a fresh AdamW with the same
// hyperparameters continues bit for bit. The zero value is not usable: set the hyperparameters (NewAdamW does).
// An AdamW is not safe for concurrent use.
type AdamW[T Float] struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// Step is the number of updates taken; the next update uses t = Step+1.
	Step int
	// M and V are the first and second moment estimates, keyed by parameter name, each as long as the
	// parameter. Both are nil before the first update.
	M, V map[string][]T
}

// NewAdamW returns an optimizer with the given hyperparameters and empty state.
// HF's defaults are NewAdamW[float32](0.9, 0.999, 1e-8, 0).
func NewAdamW[T Float](beta1, beta2, eps, weightDecay float64) *AdamW[T] {
	return &AdamW[T]{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay}
}

// Update applies one AdamW step with learning rate lr to params, in place, and advances Step.
// The first update fixes the parameter set; later ones refuse a set whose names or sizes differ (ErrParams).
// Nothing is changed when an error is returned.
func (o *AdamW[T]) Update(params []Param[T], lr float64) error {
	if err := o.check(params, lr); err != nil {
		return err
	}
	if o.M == nil {
		o.M, o.V = make(map[string][]T, len(params)), make(map[string][]T, len(params))
		for _, p := range params {
			o.M[p.Name], o.V[p.Name] = make([]T, len(p.Value)), make([]T, len(p.Value))
		}
	}
	o.Step++
	// Bias corrections in float64, once per step: the per-element arithmetic then runs in T.
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	// Elements are independent: the cores take chunks of them, and the bits do not depend on how many.
	eachChunk(params, func(_ int, p Param[T], lo, hi int) {
		decay := 0.0
		if len(p.Shape) >= 2 {
			decay = o.WeightDecay
		}
		o.updateOne(p.slice(lo, hi), o.M[p.Name][lo:hi], o.V[p.Name][lo:hi], lr, decay, bc1, bc2)
	})
	return nil
}

// updateOne is the element loop: float32 blocks of 16 on the vector kernel where the CPU has one
// (adamw_amd64.s, the same operations in the same order), the rest in Go.
func (o *AdamW[T]) updateOne(p Param[T], m, v []T, lr, decay, bc1, bc2 float64) {
	k := adamwConsts[T]{T(o.Beta1), T(1 - o.Beta1), T(o.Beta2), T(1 - o.Beta2), T(bc1), T(bc2), T(o.Eps), T(lr), T(decay)}
	done := 0
	if w, ok := any(p.Value).([]float32); ok {
		done = adamwBlocks(w, any(p.Grad).([]float32), any(m).([]float32), any(v).([]float32), any(&k).(*adamwConsts[float32]))
	}
	k.update(p.Value[done:], p.Grad[done:], m[done:], v[done:])
}

// adamwConsts are the per-step constants of the element loop, in the order adamw_amd64.s reads them:
// β1, 1−β1, β2, 1−β2, the bias corrections 1−β1^t and 1−β2^t, ε, the learning rate and the weight decay.
type adamwConsts[T Float] struct{ b1, c1, b2, c2, d1, d2, eps, lr, wd T }

// update is the element loop in Go. Every product is wrapped in an explicit T conversion, which rounds it and
// so forbids the compiler from fusing it into an FMA (Go spec, "Arithmetic operators"): amd64 and arm64 then
// produce the same bits.
func (k *adamwConsts[T]) update(value, grad, m, v []T) {
	b1, c1, b2, c2, d1, d2, eps, wlr, wd := k.b1, k.c1, k.b2, k.c2, k.d1, k.d2, k.eps, k.lr, k.wd
	for i, g := range grad {
		mi := T(b1*m[i]) + T(c1*g)                 // m = β1·m + (1−β1)·g
		vi := T(b2*v[i]) + T(c2*T(g*g))            // v = β2·v + (1−β2)·g²
		mhat := mi / d1                            // m̂ = m/(1−β1^t)
		vhat := vi / d2                            // v̂ = v/(1−β2^t)
		denom := T(math.Sqrt(float64(vhat))) + eps // √v̂+ε (sqrt in float64 is correctly rounded for float32 too)
		w := value[i]
		value[i] = w - T(wlr*(mhat/denom+T(wd*w))) // w −= lr·(m̂/(√v̂+ε) + λ·w)
		m[i], v[i] = mi, vi
	}
}

// check validates the hyperparameters, lr and params against each other and against the state.
func (o *AdamW[T]) check(params []Param[T], lr float64) error {
	switch {
	case !(o.Beta1 >= 0 && o.Beta1 < 1) || !(o.Beta2 >= 0 && o.Beta2 < 1):
		return fmt.Errorf("optim: adamw: betas must be in [0, 1), got %g, %g", o.Beta1, o.Beta2)
	case !(o.Eps > 0) || !(o.WeightDecay >= 0) || math.IsInf(o.WeightDecay, 0):
		return fmt.Errorf("optim: adamw: need eps > 0 and finite weight decay ≥ 0, got %g, %g", o.Eps, o.WeightDecay)
	case !(lr >= 0) || math.IsInf(lr, 0):
		return fmt.Errorf("optim: adamw: learning rate must be finite and ≥ 0, got %g", lr)
	}
	seen := make(map[string]bool, len(params))
	for _, p := range params {
		if err := o.checkParam(p, seen); err != nil {
			return err
		}
	}
	if o.M != nil && len(seen) != len(o.M) {
		return fmt.Errorf("%w: %d parameters, the state holds %d", ErrParams, len(seen), len(o.M))
	}
	return nil
}

func (o *AdamW[T]) checkParam(p Param[T], seen map[string]bool) error {
	if seen[p.Name] {
		return fmt.Errorf("%w: %s appears twice", ErrParams, p.Name)
	}
	seen[p.Name] = true
	if n := p.Size(); len(p.Value) != n || len(p.Grad) != n {
		return fmt.Errorf("%w: %s: shape %v has %d elements, value %d, grad %d",
			ErrParams, p.Name, p.Shape, n, len(p.Value), len(p.Grad))
	}
	if o.M == nil {
		return nil
	}
	m, ok := o.M[p.Name]
	if !ok {
		return fmt.Errorf("%w: %s has no optimizer state", ErrParams, p.Name)
	}
	if len(m) != len(p.Value) || len(o.V[p.Name]) != len(p.Value) {
		return fmt.Errorf("%w: %s has %d elements, its state %d", ErrParams, p.Name, len(p.Value), len(m))
	}
	return nil
}

// Clone returns a deep copy: hyperparameters, step and moments.
func (o *AdamW[T]) Clone() *AdamW[T] {
	c := *o
	c.M, c.V = cloneMap(o.M), cloneMap(o.V)
	return &c
}

func cloneMap[T Float](src map[string][]T) map[string][]T {
	if src == nil {
		return nil
	}
	dst := make(map[string][]T, len(src))
	for k, v := range src {
		dst[k] = append([]T(nil), v...)
	}
	return dst
}

// slice is the part lo…hi of p's values and gradients.
func (p Param[T]) slice(lo, hi int) Param[T] {
	return Param[T]{Name: p.Name, Shape: p.Shape, Value: p.Value[lo:hi], Grad: p.Grad[lo:hi]}
}
