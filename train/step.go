package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/internal/feed"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// stepResult is what one optimizer step reports.
type stepResult struct {
	loss, lr, gradNorm, alpha float64
	tokens, samples           int     // real sequence rows and samples of the step's batches
	hrSelectedFrac            float64 // of the last micro-batch's HR tokens, selected by FlexAttention
	featureHitRate            float64 // of the vision feature cache, since the run started
	seqLen                    int     // the assembled length of the last micro-batch
	skipped                   bool    // not finite: no weight or optimizer state changed
	elapsed                   time.Duration
}

// step takes one optimizer step, top to bottom: for each of gradient_accumulation_steps micro-batches the
// next batch, its graph, the forward and backward pass, its gradients taken out of the graph and
// accumulated (weighted by supervised tokens); then the learning rate of the schedule, and the update: the
// clipped gradient and AdamW (on the GPU when the run has one). A step whose loss or gradient is not finite
// changes no weight and no optimizer state (res.skipped), and one whose batches supervise nothing changes
// nothing either. Cancellation does not interrupt a step: once begun it is finished, so checkpoints fall on
// step boundaries.
func (t *trainer[T]) step(ctx context.Context) (res stepResult, err error) {
	ctx, start, at := context.WithoutCancel(ctx), time.Now(), t.position()
	defer func() { res.elapsed = time.Since(start) }() // the whole step: the optimizer's update too
	res.alpha = t.alpha()
	var lossSum float64
	tokens := 0
	for range t.cfg.GradientAccumulationSteps {
		var loss float64
		var n int
		if loss, n, err = t.microBatch(ctx, &res); err != nil { // next batch, graph, forward, backward
			err = &stepFailure{err: err, at: at}
			break
		}
		if n > 0 { // a micro-batch with nothing supervised has no (finite) loss and adds no gradient
			lossSum, tokens = lossSum+loss*float64(n), tokens+n
		}
	}
	if t.multi() { // every rank's loss and gradient sums, and whether some rank failed
		lossSum, tokens, err = t.allReduce(lossSum, tokens, err, &res, at)
	}
	if err != nil {
		return res, err
	}
	res.loss = lossSum / float64(max(1, tokens))
	if t.opts.Fault != nil {
		res.loss = t.opts.Fault(t.state.Step+1, res.loss)
	}
	if tokens == 0 || math.IsNaN(res.loss) || math.IsInf(res.loss, 0) {
		t.discard()
		res.skipped = tokens > 0
		return res, nil
	}
	if res.lr, err = optim.LR(t.cfg.LRSchedulerType, t.cfg.LearningRate, t.state.Step, t.warmup, t.total); err != nil {
		return res, err
	}
	if res.gradNorm, err = t.update(tokens, res.lr); errors.Is(err, optim.ErrNonFinite) {
		res.skipped = true
		return res, nil
	}
	t.state.Alpha, t.state.LearningRate = res.alpha, res.lr
	return res, err
}

// stepFailure is a step that failed before its update began (a batch that could not be read, a device out
// of memory): the weights and the optimizer's state are still the last finished step's, so the run saves
// them before it stops, with the data position the step started from (at).
type stepFailure struct {
	err error
	at  *dataPosition
}

func (f *stepFailure) Error() string { return f.err.Error() }
func (f *stepFailure) Unwrap() error { return f.err }

// dataPosition is where the training data stood: the loader's cursor and counters.
type dataPosition struct {
	cursor data.Cursor
	counts data.Counts
}

// position is the training loader's position now (none without a loader: a Stepper's).
func (t *trainer[T]) position() *dataPosition {
	if t.train == nil {
		return nil
	}
	return &dataPosition{cursor: t.train.Cursor(), counts: t.train.Counts()}
}

// update is the step's optimizer update over its tokens: the micro-batches' token-weighted mean gradient,
// clipped to max_grad_norm, then AdamW at lr. It returns the norm before clipping; a norm that is not finite
// changes nothing (optim.ErrNonFinite).
func (t *trainer[T]) update(tokens int, lr float64) (float64, error) {
	if t.dev != nil {
		return t.dev.Update(any(t.opt).(*optim.AdamW[float32]), lr, t.cfg.MaxGradNorm, tokens, !t.accumulates())
	}
	if t.accumulates() {
		if _, err := t.acc.Finish(t.params); err != nil {
			return 0, err
		}
	}
	norm, err := optim.ClipGradNorm(t.params, t.cfg.MaxGradNorm)
	if err != nil {
		return norm, err
	}
	return norm, t.opt.Update(t.params, lr)
}

// discard forgets the step's gradient sums (a skipped step).
func (t *trainer[T]) discard() {
	t.acc.Reset()
	if t.dev != nil {
		t.dev.Discard()
	}
}

// accumulates reports whether the step's gradient is summed in the accumulator: over several micro-batches,
// or over several ranks.
func (t *trainer[T]) accumulates() bool { return t.cfg.GradientAccumulationSteps > 1 || t.multi() }

// microBatch reads the next batch and runs it forward and backward (forwardBackward).
func (t *trainer[T]) microBatch(ctx context.Context, res *stepResult) (float64, int, error) {
	b, err := t.source.Next(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("train: data: %w", err)
	}
	loss, n, err := t.forwardBackward(b, res)
	if err != nil {
		return 0, 0, fmt.Errorf("train: batch %v: %w", b.IDs, err)
	}
	return loss, n, nil
}

// forwardBackward builds the graph of batch b, runs it forward and backward, and copies its gradients into
// the parameters; it returns the batch's loss and its number of supervised tokens, and notes its sizes.
func (t *trainer[T]) forwardBackward(b *data.Batch, res *stepResult) (float64, int, error) {
	opts := t.graph
	opts.Alpha, opts.Step = res.alpha, t.state.Step
	g, err := model.Build(t.weights, feed.Batch(b), opts)
	if err != nil {
		return 0, 0, err
	}
	defer g.Close()
	if err := g.Run(); err != nil {
		return 0, 0, err
	}
	n := feed.Supervised(b.Labels)
	if err := t.takeGrads(g.Grads(), n); err != nil {
		return 0, 0, err
	}
	res.tokens, res.samples = res.tokens+realTokens(g), res.samples+b.Len()
	res.hrSelectedFrac, res.featureHitRate = g.SelectedFraction(), t.graph.Features.Stats().HitRate()
	_, res.seqLen = g.Shape()
	return g.Loss(), n, nil
}

// takeGrads takes a graph's gradients, over tokens supervised tokens, before the graph closes: into the
// bound parameters, where a parameter the loss did not reach (a weight of this batch's unused path, a tower
// layer after select_layer) gets zeros, and then into the step's sums when it has several micro-batches or
// ranks; on a GPU, the GPU takes them where they are.
func (t *trainer[T]) takeGrads(grads map[string]*tensor.Dense, tokens int) error {
	if t.dev != nil {
		return t.dev.Accumulate(grads, tokens, !t.accumulates())
	}
	ops.Parallel(len(t.params), func(i int) {
		p := &t.params[i]
		if d, ok := grads[p.Name]; ok {
			copy(p.Grad, d.Data().([]T))
		} else {
			clear(p.Grad)
		}
	})
	if t.accumulates() { // one micro-batch's gradients alone already are the step's
		return t.acc.Add(t.params, tokens)
	}
	return nil
}

// realTokens counts the assembled sequence rows that are not padding.
func realTokens(g *model.Graph) int {
	n := 0
	for _, l := range g.Lens() {
		n += l
	}
	return n
}

// alpha is docs/DESIGN.md §9's warm-up: min(1, step / (alpha_warmup_ratio · total)), 1 without warm-up.
func (t *trainer[T]) alpha() float64 {
	w := t.cfg.Flex.AlphaWarmupRatio * float64(t.total)
	if w <= 0 {
		return 1
	}
	return math.Min(1, float64(t.state.Step)/w)
}
