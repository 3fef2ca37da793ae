package train

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"

	"github.com/flextrain/flextrain/data"
)

// evaluate runs the held-out split at the run's evaluation α (config.EvalAlpha) and records the result; the
// lowest loss is the best metric. On several ranks each evaluates its share and the reports are summed; a
// signal does not cut the evaluation short there (the ranks stop together after it).
func (t *trainer[T]) evaluate(ctx context.Context) error {
	if t.multi() {
		ctx = context.WithoutCancel(ctx)
	}
	if err := t.syncHost(); err != nil { // the evaluation reads the host's weights
		return err
	}
	l, err := t.evalLoader()
	if errors.Is(err, data.ErrEmpty) {
		return nil // no held-out split configured
	}
	if err = t.agree(err, "open the evaluation data"); err != nil {
		return fmt.Errorf("train: eval data: %w", err)
	}
	defer l.Close()
	start := time.Now()
	kinds, _ := eval.RecordKinds(t.evalPath())    // records without a kind are evaluated as a whole
	alpha, _ := config.EvalAlpha(t.cfg.Flex.View) // validated: eval_steps > 0 only on views that evaluate
	m, err := eval.Evaluate(ctx, t.weights, l, t.tok.EOS(), kinds, alpha)
	if err = t.agree(err, "evaluate"); err != nil {
		return err
	}
	if m, err = t.reduceReport(m, kinds); err != nil {
		return err
	}
	if t.state.BestMetric == nil || m.Loss < *t.state.BestMetric {
		loss := m.Loss
		t.state.BestMetric, t.state.BestStep = &loss, t.state.Step
	}
	t.log.info("evaluated", "seconds", time.Since(start).Seconds())
	return t.agree(t.log.eval(t.state.Step, m), "log")
}

// evalLoader opens eval_data_path, or the held-out part of data_path, for one ordered pass.
func (t *trainer[T]) evalLoader() (*data.Loader, error) {
	if t.cfg.EvalDataPath != "" {
		o := config.EvalDataOptions(t.cfg, t.tok, t.cfg.EvalDataPath, t.cfg.ImageFolder)
		o.Rank, o.WorldSize = t.comm.Rank(), t.comm.Size()
		return data.Open(o)
	}
	if t.cfg.ValSize <= 0 {
		return nil, data.ErrEmpty
	}
	o := config.DataOptions(t.cfg, t.tok)
	o.Logger, o.Rank, o.WorldSize = t.log.slog, t.comm.Rank(), t.comm.Size()
	o.Shuffle, o.Once, o.GroupByModalityLength, o.Split = false, true, false, data.SplitVal
	return data.Open(o)
}

// evalPath is the data file evaluation reads.
func (t *trainer[T]) evalPath() string {
	if t.cfg.EvalDataPath != "" {
		return t.cfg.EvalDataPath
	}
	return t.cfg.DataPath
}
