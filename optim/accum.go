package optim

import "fmt"

// Accumulator combines the gradients of k micro-batches into the gradient of one optimizer step.
//
// The loss of a batch is the mean cross-entropy over its supervised tokens. If micro-batch i has n_i
// supervised tokens and mean-loss gradient g_i, the gradient of the mean over all N = Σ n_i tokens is
// Σ (n_i/N)·g_i: the token-weighted mean, which is what Finish writes. So k micro-batches equal one batch k
// times as large for any token counts (up to rounding), and in particular when the counts are equal, where it
// is the plain mean (1/k)·Σ g_i. Pass tokens = 1 for every micro-batch to get the plain mean instead.
//
// The zero value is ready to use; the first Add fixes the parameter set. Sums are kept in T, in micro-batch
// order, so the result is deterministic; the cores share each pass by chunks. An Accumulator is not safe
// for concurrent use.
type Accumulator[T Float] struct {
	sum    map[string][]T
	order  []string
	tokens int
	flat   []T // Reduce's buffer, kept for the next step
}

// Add adds tokens·grad of every parameter to the running sums. A micro-batch with no supervised tokens
// (tokens = 0) contributes nothing and its gradients, which a mean over zero tokens makes NaN, are not read.
// The parameter set must be the same in every call until Finish or Reset.
func (a *Accumulator[T]) Add(params []Param[T], tokens int) error {
	if tokens < 0 {
		return fmt.Errorf("optim: accumulate: negative token count %d", tokens)
	}
	if err := a.match(params); err != nil {
		return err
	}
	if tokens == 0 {
		return nil
	}
	w := T(tokens)
	eachChunk(params, func(_ int, p Param[T], lo, hi int) {
		s := a.sum[p.Name][lo:hi]
		for i, g := range p.Grad[lo:hi] {
			s[i] += T(w * g) // the conversion rounds the product: no FMA, same bits on every CPU
		}
	})
	a.tokens += tokens
	return nil
}

// match checks params against the set of the first Add, creating the sums on the first call.
func (a *Accumulator[T]) match(params []Param[T]) error {
	if a.sum == nil {
		a.sum = make(map[string][]T, len(params))
		for _, p := range params {
			if _, dup := a.sum[p.Name]; dup {
				a.sum = nil
				return fmt.Errorf("%w: accumulate: %s appears twice", ErrParams, p.Name)
			}
			a.sum[p.Name] = make([]T, len(p.Grad))
			a.order = append(a.order, p.Name)
		}
		return nil
	}
	if len(params) != len(a.order) {
		return fmt.Errorf("%w: accumulate: %d parameters, earlier micro-batches had %d", ErrParams, len(params), len(a.order))
	}
	for _, p := range params {
		if s, ok := a.sum[p.Name]; !ok || len(s) != len(p.Grad) {
			return fmt.Errorf("%w: accumulate: %s differs from earlier micro-batches", ErrParams, p.Name)
		}
	}
	return nil
}

// Finish writes the token-weighted mean gradient into each parameter's Grad, returns the total token count
// and resets the accumulator (Reset). With no tokens at all there is no mean: it returns an error and leaves Grad alone.
func (a *Accumulator[T]) Finish(params []Param[T]) (int, error) {
	if err := a.match(params); err != nil {
		return 0, err
	}
	n := a.tokens
	if n == 0 {
		a.Reset()
		return 0, fmt.Errorf("optim: accumulate: no supervised tokens in any micro-batch")
	}
	d := T(n)
	eachChunk(params, func(_ int, p Param[T], lo, hi int) {
		g := p.Grad[lo:hi]
		for i, s := range a.sum[p.Name][lo:hi] {
			g[i] = s / d
		}
	})
	a.Reset()
	return n, nil
}

// Reset zeroes the sums and the token count, for example after a skipped step. The parameter set (and the
// memory of the sums) is kept for the next step.
func (a *Accumulator[T]) Reset() {
	for _, s := range a.sum {
		clear(s)
	}
	a.tokens = 0
}

// Reduce combines the sums of several processes that train one model, before Finish: the sums of every
// parameter, in one flat buffer in parameter order, go through sum (an in-place all-reduce over the
// processes), and tokens, the processes' supervised tokens together, replaces the count. Finish then writes
// the token-weighted mean over every process's micro-batches. A process whose micro-batches supervised
// nothing has added nothing, and contributes zeros.
func (a *Accumulator[T]) Reduce(params []Param[T], tokens int, sum func([]T) error) error {
	if err := a.match(params); err != nil {
		return err
	}
	n := 0
	for _, name := range a.order {
		n += len(a.sum[name])
	}
	if len(a.flat) != n {
		a.flat = make([]T, n)
	}
	a.copySums(func(flat, s []T) { copy(flat, s) })
	if err := sum(a.flat); err != nil {
		return err
	}
	a.copySums(func(flat, s []T) { copy(s, flat) })
	a.tokens = tokens
	return nil
}

// copySums calls f on each parameter's sums and its stretch of the flat buffer, in parameter order.
func (a *Accumulator[T]) copySums(f func(flat, s []T)) {
	off := 0
	for _, name := range a.order {
		s := a.sum[name]
		f(a.flat[off:off+len(s)], s)
		off += len(s)
	}
}
