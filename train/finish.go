package train

import (
	"context"
	"errors"
	"time"
)

// finish evaluates and saves at the end of the run unless the last step already did.
func (t *trainer[T]) finish() error {
	if t.cfg.EvalSteps > 0 && !t.every(t.cfg.EvalSteps) {
		if err := t.evaluate(context.Background()); err != nil {
			return err
		}
	}
	if !t.every(t.cfg.SaveSteps) {
		return t.save()
	}
	return nil
}

// stop ends the run after an error or an interruption: an interruption commits a checkpoint of the last
// finished step first (a step is never left half done).
func (t *trainer[T]) stop(err error) (Summary, error) {
	if errors.Is(err, ErrInterrupted) && t.state.Step > 0 {
		if serr := t.save(); serr != nil {
			return Summary{}, errors.Join(err, serr)
		}
	}
	return Summary{Steps: t.state.Step, SkippedNonFinite: t.state.SkippedNonFinite}, err
}

// summary reports the run with Hugging Face's end-of-run numbers.
func (t *trainer[T]) summary(start time.Time, meanLoss float64) Summary {
	secs := time.Since(start).Seconds()
	s := Summary{TrainRuntime: round(secs, 3), TrainLoss: meanLoss, Steps: t.state.Step, SkippedNonFinite: t.state.SkippedNonFinite,
		TrainSamplesPerSecond: round(float64(t.samples)/secs, 3), FeatureCacheHitRate: round(t.features.Stats().HitRate(), 4)}
	t.log.summary(s)
	return s
}
