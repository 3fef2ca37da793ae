package train

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/dist"
	"github.com/flextrain/flextrain/gpu"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/ops"
)

// BatchSource is what a Stepper reads its micro-batches from.
type BatchSource = batchSource

// StepperOptions choose how a Stepper's steps run.
type StepperOptions struct {
	Steps  int  // the schedule's length (the learning rate's and α's), without warm-up of the learning rate
	Dense  bool // FlexAttention the dense way: the official cost, the benchmark's baseline
	Cached bool // the frozen front from an in-memory feature cache, as in epochs after the first
}

// Stepper takes the optimizer steps Run takes (the same step function), in float32, on a model and a
// batch source of the caller's, without a run's data files, checkpoints or logs: `flextrain bench` times
// it. It is not safe for concurrent use.
type Stepper struct {
	t *trainer[float32]
}

// StepStats is what one Stepper step measured.
type StepStats struct {
	Loss, GradNorm, LR float64
	Tokens, Samples    int     // real sequence rows and samples of the step's batches
	SeqLen             int     // the assembled length of the last micro-batch
	Selected           float64 // the fraction of HR tokens FlexAttention selected
	FeatureHitRate     float64 // of the feature cache, since the Stepper began
	Elapsed            time.Duration
}

// NewStepper binds the trainable weights of w (cfg's trainable patterns) to an AdamW optimizer of cfg's
// settings, over src, with the graph of cfg's flex.view, on cfg's device. Close releases the device.
func NewStepper(cfg config.Config, w *model.Weights, src BatchSource, opts StepperOptions) (*Stepper, error) {
	t := &trainer[float32]{cfg: cfg, comm: dist.Single{}, weights: w, source: src, mem: ops.NewArena(), total: opts.Steps,
		log: &logger{slog: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	if err := t.bindParams(); err != nil {
		return nil, err
	}
	var err error
	if t.graph, err = graphOptions(cfg, t.mem); err != nil {
		return nil, fmt.Errorf("train: stepper: %w", err)
	}
	t.graph.Dense = opts.Dense
	if err := t.openDevice(); err != nil {
		return nil, err
	}
	if opts.Cached {
		t.cfg.FeatureCache = "memory"
		if err := t.openFeatureCache(); err != nil {
			t.close()
			return nil, err
		}
	}
	return &Stepper{t: t}, nil
}

// DeviceUsage is the Stepper's GPU's work so far: its peak memory and its matrix products' operations
// (gpu.Usage); zeros on the CPU.
func (s *Stepper) DeviceUsage() gpu.Usage { return s.t.deviceUsage() }

// Close releases the Stepper's device (a no-op on the CPU).
func (s *Stepper) Close() { s.t.close() }

// Step takes one optimizer step.
func (s *Stepper) Step(ctx context.Context) (StepStats, error) {
	res, err := s.t.step(ctx)
	if err != nil {
		return StepStats{}, err
	}
	s.t.state.Step++
	return StepStats{Loss: res.loss, GradNorm: res.gradNorm, LR: res.lr, Tokens: res.tokens, Samples: res.samples,
		SeqLen: res.seqLen, Selected: res.hrSelectedFrac, FeatureHitRate: res.featureHitRate, Elapsed: res.elapsed}, nil
}

// Arena reports the buffers of the steps' graphs (ops.Arena): what they occupy and what steps allocated.
func (s *Stepper) Arena() ops.ArenaStats { return s.t.mem.Stats() }
