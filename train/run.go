// Package train is flextrain's training loop: it joins the model, the data loader, the optimizer and the
// checkpoints. Run reads top to bottom as one optimizer step after another; everything else in the
// package is a plain helper it calls.
package train

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"time"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/dist"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/optim"
)

// ErrInterrupted is returned when the context was cancelled (SIGINT, SIGTERM): the step in progress was
// finished and a checkpoint committed first.
var ErrInterrupted = errors.New("train: interrupted")

// ErrNonFinite is returned when too many optimizer steps in a row had a non-finite loss or gradient.
var ErrNonFinite = errors.New("train: non-finite loss or gradient")

// maxNonFinite is how many non-finite steps in a row stop the run.
const maxNonFinite = 3

// RunOptions are the parts of a run that are not configuration.
type RunOptions struct {
	Resume string    // auto (default), none, or a checkpoint path
	Out    io.Writer // the progress line or log lines, the config table and the summary
	Logger *slog.Logger
	// Fault, when set, may replace each step's loss (tests inject NaN with it).
	Fault func(step int, loss float64) float64
	// FS is the file system checkpoints are saved to and resumed from; nil means the real one. Tests give
	// one that fails the way a full disk does.
	FS checkpoints.FS
	// Overwrite lets a fresh run start in an output_dir that holds another run (Hugging Face's
	// overwrite_output_dir): that run's checkpoints are removed and its metrics.jsonl emptied. Without it
	// such a run is refused with ErrOutputDirInUse. It never resumes.
	Overwrite bool
	// AllowDataChange resumes a checkpoint although data_path's content differs from the file it was
	// trained on (a warning instead of ErrConfigMismatch).
	AllowDataChange bool
	// Comm is the group of ranks that train this model together (dist.Open); nil means this process alone.
	Comm dist.Comm
	// Reshard resumes a checkpoint written by another number of ranks, restarting the epoch's order from the
	// global sample count; without it such a resume is refused.
	Reshard bool
	// inspect, when set, sees the weights at the end of a successful run (tests compare their bytes).
	inspect func(*model.Weights)
	// openDevice, when set, opens the run's GPU instead of package gpu (tests give a stand-in).
	openDevice func(d config.Device, tf32 bool, params []optim.Param[float32]) (accelerator, error)
}

// Summary is what a finished run reports, with Hugging Face's names.
type Summary struct {
	TrainRuntime          float64 `json:"train_runtime"`
	TrainSamplesPerSecond float64 `json:"train_samples_per_second"`
	TrainLoss             float64 `json:"train_loss"`
	Steps                 int     `json:"global_step"`
	SkippedNonFinite      int     `json:"skipped_nonfinite"`
	FeatureCacheHitRate   float64 `json:"feature_cache_hit_rate"` // vision features read from the cache
	LastCheckpoint        string  `json:"last_checkpoint,omitempty"`
	PeakDeviceMemoryMiB   float64 `json:"peak_device_memory_mib,omitempty"` // on a GPU: the most its buffers held at once
}

// Run trains the configured model: it resumes when asked, then takes optimizer steps until max steps,
// evaluating, logging and saving on the way. On cancellation it finishes the current step, saves a
// checkpoint and returns ErrInterrupted. A step whose loss or gradient is not finite changes no weight and
// no optimizer state but still counts (and saves and evaluates on schedule); maxNonFinite of them in a row
// return ErrNonFinite. A failed save stops the run.
func Run(ctx context.Context, cfg config.Config, opts RunOptions) (Summary, error) {
	if cfg.DType == "float64" {
		return run[float64](ctx, cfg, opts)
	}
	return run[float32](ctx, cfg, opts)
}

func run[T optim.Float](ctx context.Context, cfg config.Config, opts RunOptions) (Summary, error) {
	t, err := setup[T](ctx, cfg, opts)
	if err != nil {
		return Summary{}, err
	}
	defer t.close()
	start, lossSum, losses := time.Now(), 0.0, 0
	for t.state.Step < t.total {
		if stop, err := t.stopTogether(ctx.Err() != nil); err != nil || stop {
			return t.stop(cmp.Or(err, ErrInterrupted))
		}
		res, err := t.step(ctx)
		if err != nil {
			return t.stop(err)
		}
		t.state.Step, t.state.Epoch, t.samples = t.state.Step+1, t.epoch(), t.samples+res.samples
		if res.skipped { // a skipped step still counts: the schedule below saves and evaluates as planned
			if err := t.skip(res); err != nil {
				return t.stop(err)
			}
		} else {
			t.state.NonFiniteInRow = 0
			lossSum, losses = lossSum+res.loss, losses+1
			if err := t.agree(t.log.step(t.state, res, t.total), "log"); err != nil {
				return t.stop(err)
			}
		}
		if t.every(t.cfg.EvalSteps) {
			if err := t.evaluate(ctx); err != nil {
				return t.stop(interrupted(ctx, err))
			}
		}
		if t.every(t.cfg.SaveSteps) {
			if err := t.save(); err != nil {
				return t.stop(err)
			}
		}
	}
	if err := t.finish(); err != nil {
		return t.stop(err)
	}
	if opts.inspect != nil {
		opts.inspect(t.weights)
	}
	return t.summary(start, lossSum/math.Max(1, float64(losses)))
}

// epoch is how far the run is through the training split: the epochs done and the fraction of this one,
// counted in this rank's records, a batch at a time.
func (t *trainer[T]) epoch() float64 {
	c := t.train.Cursor()
	return float64(c.Epoch) + float64(c.Position)/float64(max(1, t.train.StepsPerEpoch()*t.cfg.PerDeviceTrainBatchSize))
}

// skip accounts for a step whose update was skipped as non-finite; maxNonFinite in a row stop the run.
func (t *trainer[T]) skip(res stepResult) error {
	t.state.SkippedNonFinite++
	if t.state.NonFiniteInRow++; t.state.NonFiniteInRow >= maxNonFinite {
		return fmt.Errorf("%w: %d steps in a row, the last at step %d", ErrNonFinite, t.state.NonFiniteInRow, t.state.Step)
	}
	t.log.warn("non-finite loss or gradient: update skipped", "step", t.state.Step, "loss", res.loss)
	return nil
}

// interrupted turns an error caused by the cancellation of ctx (an evaluation cut short by a signal) into
// ErrInterrupted, so that the finished step is still saved.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ErrInterrupted
	}
	return err
}
