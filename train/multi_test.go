package train

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/dist/disttest"
)

// runRanks runs cfg on n in-process ranks (disttest.Local), each with the context and options edit makes
// (when not nil), and returns every rank's error; rank 0's output is logged when the test fails.
func runRanks(t *testing.T, cfg config.Config, n int, edit func(rank int, ctx *context.Context, o *RunOptions)) []error {
	t.Helper()
	comms := disttest.Local(n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, opts := context.Background(), RunOptions{Comm: comms[r]}
			if edit != nil {
				edit(r, &ctx, &opts)
			}
			out := &syncBuffer{}
			opts.Out = out
			_, errs[r] = Run(ctx, cfg, opts)
			if r == 0 {
				t.Cleanup(func() {
					if t.Failed() {
						t.Logf("rank 0's output:\n%s", out)
					}
				})
			}
		}()
	}
	wg.Wait()
	return errs
}

func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// TestRunTwoRanksMatchOne: 2 ranks of per-device batch 2 read, step by step, the same global batches as 1
// rank of batch 4 (the loader's mega-batches), so the logged losses agree to 1e-5 (relative) and the
// final weights to float32 reduction-order rounding; the 2-rank checkpoint holds both ranks' positions.
func TestRunTwoRanksMatchOne(t *testing.T) {
	const steps = 12
	one := tinyConfig(t, "max_steps=12", "per_device_train_batch_size=4")
	mustRun(t, one, RunOptions{})
	two := tinyConfig(t, "max_steps=12", "per_device_train_batch_size=2")
	noErrors(t, runRanks(t, two, 2, nil))
	a, b := stepRecords(t, one.OutputDir), stepRecords(t, two.OutputDir)
	for s := 1; s <= steps; s++ {
		x, y := a[s]["loss"].(float64), b[s]["loss"].(float64)
		if math.Abs(x-y) > 1e-5*math.Abs(x) {
			t.Errorf("step %d: loss %v on 2 ranks, %v on 1", s, y, x)
		}
	}
	ca, cb := loadCheckpoint(t, one.OutputDir, steps), loadCheckpoint(t, two.OutputDir, steps)
	for name, w := range ca.Weights {
		x, _ := w.Float32s()
		y, _ := cb.Weights[name].Float32s()
		for i := range x {
			if d := math.Abs(float64(x[i] - y[i])); d > 1e-5+1e-4*math.Abs(float64(x[i])) {
				t.Fatalf("%s[%d] = %v on 2 ranks, %v on 1", name, i, y[i], x[i])
			}
		}
	}
	// 12 steps of 2 micro-batches of 2 samples read 48 records on each rank: one epoch of its half.
	st := stateOf(t, cb)
	if st.WorldSize != 2 || len(st.Ranks) != 2 || st.Ranks[1].Counts.Records != 48 || st.Counts.Records != 96 {
		t.Errorf("2-rank state: world %d, counts %+v, ranks %+v; want both ranks' positions and counts", st.WorldSize, st.Counts, st.Ranks)
	}
}

// TestRunTwoRanksResumeIsBitExact: a 2-rank run cancelled on one rank after step 5 stops on both after that
// step, saves it, and resumed to step 10 logs the losses and ends with the weights of an uninterrupted
// 2-rank run, bit for bit.
func TestRunTwoRanksResumeIsBitExact(t *testing.T) {
	straight := tinyConfig(t, "max_steps=10", "per_device_train_batch_size=2")
	noErrors(t, runRanks(t, straight, 2, nil))

	cut := straight
	cut.OutputDir = t.TempDir()
	errs := runRanks(t, cut, 2, func(rank int, ctx *context.Context, o *RunOptions) {
		if rank != 1 {
			return
		}
		var cancel context.CancelFunc // a signal that reaches one rank only, during step 5
		*ctx, cancel = context.WithCancel(*ctx)
		o.Fault = func(step int, loss float64) float64 {
			if step == 5 {
				cancel()
			}
			return loss
		}
	})
	for r, err := range errs {
		if !errors.Is(err, ErrInterrupted) {
			t.Fatalf("rank %d of the cut run: %v; want ErrInterrupted", r, err)
		}
	}
	if e, err := checkpoints.Latest(cut.OutputDir); err != nil || e.Step != 5 {
		t.Fatalf("Latest after the cut = %+v, %v; want step 5", e, err)
	}
	noErrors(t, runRanks(t, cut, 2, nil))
	compareLogs(t, stepRecords(t, straight.OutputDir), stepRecords(t, cut.OutputDir), 10)
	compareCheckpoints(t, loadCheckpoint(t, straight.OutputDir, 10), loadCheckpoint(t, cut.OutputDir, 10))
}

// TestRunRefusesOtherWorldSize: a checkpoint written by 2 ranks is not resumed by 1 without --reshard,
// which then continues from the epoch's global position.
func TestRunRefusesOtherWorldSize(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=3", "per_device_train_batch_size=2")
	noErrors(t, runRanks(t, cfg, 2, nil))
	cfg.MaxSteps = 4
	_, _, err := runTiny(t, context.Background(), cfg, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "written by 2 ranks") || !strings.Contains(err.Error(), "--reshard") {
		t.Fatalf("resume of a 2-rank checkpoint on 1 rank: %v; want a refusal naming --reshard", err)
	}
	if _, out := mustRun(t, cfg, RunOptions{Reshard: true}); !strings.Contains(out, "resumed") {
		t.Errorf("with Reshard the run did not resume:\n%s", out)
	}
}

// TestRunRankFailureStopsAll: a rank whose setup fails stops the others, which say so, instead of leaving
// them waiting for it.
func TestRunRankFailureStopsAll(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=3")
	comms := disttest.Local(2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cfg
			if r == 1 {
				c.TokenizerPath = "no-such-tokenizer.json"
			}
			_, errs[r] = Run(context.Background(), c, RunOptions{Comm: comms[r]})
		}()
	}
	wg.Wait()
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "no-such-tokenizer.json") {
		t.Errorf("rank 1: %v; want its own error", errs[1])
	}
	if errs[0] == nil || !strings.Contains(errs[0].Error(), "another rank") {
		t.Errorf("rank 0: %v; want an error saying another rank failed", errs[0])
	}
	if _, err := checkpoints.Latest(cfg.OutputDir); !errors.Is(err, checkpoints.ErrNotFound) {
		t.Errorf("output_dir after a failed setup: %v; want no checkpoint", err)
	}
}
