package train

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/gpu"
	"github.com/flextrain/flextrain/internal/devicetest"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/optim"
)

// onStandIn returns run options whose GPU is a devicetest.Training, kept in *run.
func onStandIn(run **devicetest.Training) RunOptions { return onStandInOf(run, 0) }

// onStandInOf is onStandIn with a GPU of memory bytes (0: a large one).
func onStandInOf(run **devicetest.Training, memory int64) RunOptions {
	return RunOptions{openDevice: func(_ config.Device, _ bool, params []optim.Param[float32]) (accelerator, error) {
		*run = devicetest.NewTraining(params)
		(*run).MemoryBytes = memory
		return *run, nil
	}}
}

// TestRunOnDeviceIsTheCPURun trains the tiny model on a stand-in GPU (the CPU's arithmetic, memory apart
// from its values), with micro-batches and without, with bf16's 16-bit frozen matrices, with recomputation,
// and with the vision tower training too, interrupted and resumed: every step's log and the last
// checkpoint are the CPU run's bits. So the trainer takes the gradients, updates and brings the weights
// and moments back for its checkpoints through the device, and reads nothing of it as host memory.
func TestRunOnDeviceIsTheCPURun(t *testing.T) {
	for _, set := range []string{"gradient_accumulation_steps=1", "gradient_accumulation_steps=2", "bf16=true", "gradient_checkpointing=true",
		"frozen=[]"} {
		t.Run(set, func(t *testing.T) {
			const steps, k = 8, 5
			sets := []string{"max_steps=8", set, "save_steps=4", "eval_steps=3"}
			cpu := tinyConfig(t, sets...)
			if s, _ := mustRun(t, cpu, RunOptions{}); s.PeakDeviceMemoryMiB != 0 {
				t.Errorf("a CPU run's summary gives a GPU's peak memory, %v MiB", s.PeakDeviceMemoryMiB)
			}

			dev := tinyConfig(t, append(sets, "device=cuda")...)
			var run *devicetest.Training
			opts := onStandIn(&run)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts.Fault = func(step int, loss float64) float64 {
				if step == k {
					cancel()
				}
				return loss
			}
			if s, _, err := runTiny(t, ctx, dev, opts); !errors.Is(err, ErrInterrupted) || s.Steps != k {
				t.Fatalf("interrupted run: %d steps, %v", s.Steps, err)
			}
			bf16 := set == "bf16=true" // 16-bit frozen matrices, and the activations held in bfloat16 between the passes
			if !run.Closed || run.Ran["FlexAttention"] == 0 || run.Ran["Select"] == 0 || bf16 != (run.Ran["LinearHalf"] > 0) ||
				bf16 != (run.Ran["Pack"] > 0) || (set == "frozen=[]") != (run.Ran["LayerNormGradX"] > 0) {
				t.Fatalf("the stand-in ran %v, closed %v", run.Ran, run.Closed)
			}
			s, out := mustRun(t, dev, onStandIn(&run))
			if !strings.Contains(out, "resumed") {
				t.Errorf("the second run did not resume:\n%s", out)
			}
			if peak := round(mib(run.Usage().PeakBytes), 1); s.PeakDeviceMemoryMiB != peak || peak == 0 {
				t.Errorf("the summary's peak device memory %v MiB; the device's %v", s.PeakDeviceMemoryMiB, peak)
			}
			compareLogs(t, stepRecords(t, cpu.OutputDir), stepRecords(t, dev.OutputDir), steps)
			compareCheckpoints(t, loadCheckpoint(t, cpu.OutputDir, steps), loadCheckpoint(t, dev.OutputDir, steps))
		})
	}
}

// TestRunDeviceRefusals: a GPU run in a build without CUDA names the device and the build; one that does
// not fit its GPU (DevicePlan) is refused with the plan before anything runs or output_dir is touched.
func TestRunDeviceRefusals(t *testing.T) {
	cfg := tinyConfig(t, "device=cuda:1", "max_steps=1", "frozen=[model.vision_tower.*]")
	_, _, err := runTiny(t, context.Background(), cfg, RunOptions{})
	if !errors.Is(err, gpu.ErrNoCUDA) || !strings.Contains(err.Error(), "cuda:1") {
		t.Errorf("device cuda:1 without CUDA: %v", err)
	}
	var run *devicetest.Training
	cfg = tinyConfig(t, "device=cuda", "max_steps=1")
	_, _, err = runTiny(t, context.Background(), cfg, onStandInOf(&run, 1<<20))
	if err == nil || !strings.Contains(err.Error(), "GiB on cuda:0, which has 0.0 GiB") || !run.Closed || len(run.Ran) > 0 {
		t.Errorf("a run larger than its GPU: %v", err)
	}
	if entries, _ := os.ReadDir(cfg.OutputDir); len(entries) != 0 {
		t.Errorf("a refused run left %d entries in output_dir", len(entries))
	}
}

// TestRunRecomputeIsTheSameRun: gradient_checkpointing recomputes each trainable layer in the backward pass
// and logs and checkpoints the bits of the run without it, in float32 and in mixed precision.
func TestRunRecomputeIsTheSameRun(t *testing.T) {
	var re config.Config
	for _, precision := range []string{"bf16=false", "bf16=true"} {
		sets := []string{"max_steps=6", "save_steps=6", precision}
		plain := tinyConfig(t, sets...)
		mustRun(t, plain, RunOptions{})
		re = tinyConfig(t, append(sets, "gradient_checkpointing=true")...)
		mustRun(t, re, RunOptions{})
		compareLogs(t, stepRecords(t, plain.OutputDir), stepRecords(t, re.OutputDir), 6)
		compareCheckpoints(t, loadCheckpoint(t, plain.OutputDir, 6), loadCheckpoint(t, re.OutputDir, 6))
	}
	st, err := NewStepper(re, model.InitWeights(re.Model(), tensor.Float32, 1), nil, StepperOptions{Steps: 1})
	if err != nil || !st.t.graph.Recompute {
		t.Errorf("a Stepper of gradient_checkpointing: true builds graphs without recomputation (%v)", err)
	}
}

// TestRunTwoRanksOnDevices: two ranks, each on its own stand-in GPU (the GPU of its local rank, for device
// cuda), log and checkpoint the bits of two ranks on CPUs, whether the gradients' sums come down, meet
// through the comm and go back up, or, where the GPUs can group (NCCL), meet among the GPUs.
func TestRunTwoRanksOnDevices(t *testing.T) {
	sets := []string{"max_steps=6", "per_device_train_batch_size=2", "save_steps=6"}
	cpu := tinyConfig(t, sets...)
	noErrors(t, runRanks(t, cpu, 2, nil))
	for _, tc := range []struct {
		name     string
		canGroup [2]bool // which ranks' GPUs can join a group
		grouped  bool    // whether the sums run in one
	}{{"no groups", [2]bool{}, false}, {"groups", [2]bool{true, true}, true}, {"rank 1 without", [2]bool{true, false}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			groups := &devicetest.Groups{}
			dev := tinyConfig(t, append(sets, "device=cuda")...)
			runs := make([]*devicetest.Training, 2)
			ordinals := make([]int, 2)
			noErrors(t, runRanks(t, dev, 2, func(rank int, _ *context.Context, o *RunOptions) {
				o.openDevice = func(d config.Device, _ bool, params []optim.Param[float32]) (accelerator, error) {
					runs[rank], ordinals[rank] = devicetest.NewTraining(params), d.Ordinal
					if tc.canGroup[rank] {
						runs[rank].Groups = groups
					}
					return runs[rank], nil
				}
			}))
			for r, run := range runs {
				if run == nil || !run.Closed || run.Ran["FlexAttention"] == 0 || ordinals[r] != r {
					t.Fatalf("rank %d: stand-in %v, GPU cuda:%d", r, run != nil, ordinals[r])
				}
				if summed := run.Grouped > 0; summed != tc.grouped {
					t.Errorf("rank %d: %d sums in a device group; want them there: %v", r, run.Grouped, tc.grouped)
				}
			}
			compareLogs(t, stepRecords(t, cpu.OutputDir), stepRecords(t, dev.OutputDir), 6)
			compareCheckpoints(t, loadCheckpoint(t, cpu.OutputDir, 6), loadCheckpoint(t, dev.OutputDir, 6))
		})
	}
}

// TestRunSavesBeforeAFailedStep: a step that fails before its update (the stand-in GPU out of memory at
// step 6's gradients) stops the run with its error after saving step 5 (save_steps 4 had saved step 4
// only), its data rewound to where step 6 started: the resumed run logs and checkpoints the bits of a run
// that never failed. A failure in the update itself, after which the weights may be half updated, saves
// nothing.
func TestRunSavesBeforeAFailedStep(t *testing.T) {
	oom := errors.New("devicetest: out of memory")
	sets := []string{"max_steps=8", "save_steps=4", "gradient_accumulation_steps=2"}
	cpu := tinyConfig(t, sets...)
	mustRun(t, cpu, RunOptions{})
	for _, c := range []struct {
		method string
		call   int // the failing call: step 6's first micro-batch, or step 6's update
		saved  bool
	}{{"Accumulate", 10, true}, {"Update", 5, false}} {
		t.Run(c.method, func(t *testing.T) {
			dev := tinyConfig(t, append(sets, "device=cuda")...)
			var run *devicetest.Training
			opts := onStandIn(&run)
			open := opts.openDevice
			opts.openDevice = func(d config.Device, tf32 bool, params []optim.Param[float32]) (accelerator, error) {
				a, err := open(d, tf32, params)
				run.Fault = func(method string, calls int) error {
					if method == c.method && calls == c.call {
						return oom
					}
					return nil
				}
				return a, err
			}
			s, out, err := runTiny(t, context.Background(), dev, opts)
			if !errors.Is(err, oom) || s.Steps != 5 {
				t.Fatalf("a run whose step 6 fails: %d steps, %v", s.Steps, err)
			}
			_, statErr := os.Stat(filepath.Join(dev.OutputDir, "checkpoint-5"))
			if saved := statErr == nil; saved != c.saved || saved != strings.Contains(out, "the steps before it are saved") {
				t.Fatalf("checkpoint-5 saved: %v; want %v\n%s", saved, c.saved, out)
			}
			if !c.saved {
				return
			}
			if _, out := mustRun(t, dev, onStandIn(&run)); !strings.Contains(out, "resumed") {
				t.Errorf("the second run did not resume:\n%s", out)
			}
			compareLogs(t, stepRecords(t, cpu.OutputDir), stepRecords(t, dev.OutputDir), 8)
			compareCheckpoints(t, loadCheckpoint(t, cpu.OutputDir, 8), loadCheckpoint(t, dev.OutputDir, 8))
		})
	}
}

// TestRunTwoRanksSaveBeforeAFailedStep: when rank 1's GPU fails at step 4's gradients, both ranks learn of
// it at the step's all-reduce, save step 3 together (each rank's data rewound) and stop; run again, they
// resume and log and checkpoint the bits of two ranks that never failed.
func TestRunTwoRanksSaveBeforeAFailedStep(t *testing.T) {
	sets := []string{"max_steps=6", "per_device_train_batch_size=2", "save_steps=6"}
	cpu := tinyConfig(t, sets...)
	noErrors(t, runRanks(t, cpu, 2, nil))
	dev := tinyConfig(t, append(sets, "device=cuda")...)
	onDevices := func(fail bool) func(int, *context.Context, *RunOptions) {
		return func(rank int, _ *context.Context, o *RunOptions) {
			o.openDevice = func(_ config.Device, _ bool, params []optim.Param[float32]) (accelerator, error) {
				run := devicetest.NewTraining(params)
				if fail && rank == 1 {
					run.Fault = func(method string, calls int) error {
						if method == "Accumulate" && calls == 6 { // step 4's first micro-batch of two
							return errors.New("devicetest: out of memory")
						}
						return nil
					}
				}
				return run, nil
			}
		}
	}
	errs := runRanks(t, dev, 2, onDevices(true))
	if !strings.Contains(fmt.Sprint(errs[0]), "failed on another rank") || !strings.Contains(fmt.Sprint(errs[1]), "out of memory") {
		t.Fatalf("the ranks' errors: %v", errs)
	}
	if _, err := os.Stat(filepath.Join(dev.OutputDir, "checkpoint-3")); err != nil {
		t.Fatalf("step 3 not saved: %v", err)
	}
	noErrors(t, runRanks(t, dev, 2, onDevices(false)))
	compareLogs(t, stepRecords(t, cpu.OutputDir), stepRecords(t, dev.OutputDir), 6)
	compareCheckpoints(t, loadCheckpoint(t, cpu.OutputDir, 6), loadCheckpoint(t, dev.OutputDir, 6))
}
