package train

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/flextrain/flextrain/gpu"
)

// finish evaluates and saves at the end of the run unless the last step already did.
func (t *trainer[T]) finish() error {
	if t.cfg.EvalSteps > 0 && !t.every(t.cfg.EvalSteps) {
		if err := t.evaluate(context.Background()); err != nil {
			return err
		}
	}
	if t.state.Step != t.saved {
		return t.save()
	}
	return nil
}

// stop ends the run after an error or an interruption. An interruption, metrics that cannot be written, or
// a step that failed before its update (stepFailure: the data rewound to where it started) commits a
// checkpoint of the last finished step first, unless one exists (a step is never left half done, and no
// finished step is lost).
func (t *trainer[T]) stop(err error) (Summary, error) {
	var failed *stepFailure
	keep := errors.Is(err, ErrInterrupted) || errors.Is(err, ErrMetrics) || errors.As(err, &failed)
	if keep && t.state.Step > 0 && t.state.Step != t.saved {
		serr := t.rewind(failed)
		if serr == nil {
			serr = t.save()
		}
		if serr != nil {
			return Summary{}, errors.Join(err, serr)
		}
		if failed != nil {
			t.log.warn("step failed: the steps before it are saved", "step", t.state.Step+1, "checkpoint", t.lastPath())
		}
	}
	return Summary{Steps: t.state.Step, SkippedNonFinite: t.state.SkippedNonFinite}, err
}

// rewind puts the training data back where a failed step started, so that its checkpoint resumes with
// that step's batches (nothing to do for other stops: they fall between steps).
func (t *trainer[T]) rewind(failed *stepFailure) error {
	if failed == nil || failed.at == nil {
		return nil
	}
	if err := t.train.Restore(failed.at.cursor); err != nil {
		return fmt.Errorf("train: step %d failed; rewind its data: %w", t.state.Step+1, err)
	}
	t.train.RestoreCounts(failed.at.counts)
	return nil
}

// summary reports the run with Hugging Face's end-of-run numbers.
func (t *trainer[T]) summary(start time.Time, meanLoss float64) (Summary, error) {
	secs := time.Since(start).Seconds()
	s := Summary{TrainRuntime: round(secs, 3), TrainLoss: meanLoss, Steps: t.state.Step, SkippedNonFinite: t.state.SkippedNonFinite,
		TrainSamplesPerSecond: round(float64(t.samples)/secs, 3), FeatureCacheHitRate: round(t.graph.Features.Stats().HitRate(), 4),
		LastCheckpoint: t.lastPath(), PeakDeviceMemoryMiB: round(mib(t.deviceUsage().PeakBytes), 1)}
	return s, t.log.summary(s)
}

// lastPath is the directory of the run's newest checkpoint.
func (t *trainer[T]) lastPath() string {
	return filepath.Join(t.cfg.OutputDir, fmt.Sprint("checkpoint-", t.saved))
}

// deviceUsage is the run's GPU's work so far (gpu.Usage); zeros on the CPU.
func (t *trainer[T]) deviceUsage() gpu.Usage {
	if t.dev == nil {
		return gpu.Usage{}
	}
	return t.dev.Usage()
}

// mib is bytes in MiB.
func mib(bytes int64) float64 { return float64(bytes) / (1 << 20) }
