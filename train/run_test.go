package train

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// TestRunLearnsAndKeepsFrozenWeights trains the tiny model for 50 steps: the loss falls, every frozen tensor
// keeps the bytes of the seeded initialisation, every trainable one changes, the final checkpoint holds
// exactly the trained tensors, and the evaluation at the end scores exact-match answers.
func TestRunLearnsAndKeepsFrozenWeights(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=50", "eval_steps=50")
	var final *model.Weights
	s, _ := mustRun(t, cfg, RunOptions{inspect: func(w *model.Weights) { final = w }})
	if s.Steps != 50 {
		t.Errorf("summary global_step = %d; want 50", s.Steps)
	}
	recs := stepRecords(t, cfg.OutputDir)
	if got := len(recs); got != 50 {
		t.Fatalf("metrics.jsonl has %d step records; want 50 (logging_steps 1)", got)
	}
	if got := meanLoss(recs, 1, 50); math.Float64bits(got) != math.Float64bits(s.TrainLoss) {
		t.Errorf("mean of the logged losses = %v; want the summary's train_loss %v bit for bit (loss is logged unrounded)", got, s.TrainLoss)
	}
	first, last := meanLoss(recs, 1, 10), meanLoss(recs, 41, 50)
	if !(last < 0.6*first) {
		t.Errorf("mean loss of steps 41–50 = %.4f; want well below (< 0.6×) that of steps 1–10, %.4f", last, first)
	}
	checkFrozen(t, cfg, final)
	ck := loadCheckpoint(t, cfg.OutputDir, 50)
	if d := diffTensors(ck.Weights, trainedTensors(cfg, final)); len(d) > 0 {
		t.Errorf("checkpoint-50 differs from the trained weights in memory: %v", d)
	}
	checkEval(t, cfg.OutputDir, 50, first)
}

// meanLoss is the mean logged loss of steps from…to.
func meanLoss(recs map[int]record, from, to int) float64 {
	sum := 0.0
	for s := from; s <= to; s++ {
		sum += recs[s]["loss"].(float64)
	}
	return sum / float64(to-from+1)
}

// checkFrozen compares the weights after training with a fresh seeded initialisation, tensor by tensor.
func checkFrozen(t *testing.T, cfg config.Config, final *model.Weights) {
	t.Helper()
	if final == nil {
		t.Fatal("the run did not report its final weights")
	}
	init, after := model.InitWeights(cfg.Model(), tensor.Float32, uint64(cfg.Seed)).Tensors(), final.Tensors()
	frozen := 0
	for name, a := range after {
		same := bytes.Equal(a.Data, init[name].Data)
		switch trainable := cfg.Trainable(name); {
		case !trainable && !same:
			t.Errorf("frozen tensor %s changed in training", name)
		case trainable && same:
			t.Errorf("trainable tensor %s did not change in 50 steps", name)
		case !trainable:
			frozen++
		}
	}
	if frozen == 0 {
		t.Errorf("no frozen tensor among %d: the test checks nothing", len(after))
	}
}

// trainedTensors are the trainable weights of w as a checkpoint stores them.
func trainedTensors(cfg config.Config, w *model.Weights) map[string]safetensors.Tensor {
	out := map[string]safetensors.Tensor{}
	for name, ts := range w.Tensors() {
		if cfg.Trainable(name) {
			out[name] = ts
		}
	}
	return out
}

// checkEval finds the evaluation logged at step and checks it against the 24 validation samples.
func checkEval(t *testing.T, dir string, step int, trainLoss float64) {
	t.Helper()
	for _, r := range readMetrics(t, dir) {
		if _, ok := r["eval_loss"]; !ok || int(r["step"].(float64)) != step {
			continue
		}
		loss, n, answers := r["eval_loss"].(float64), r["eval_samples"].(float64), r["eval_answers"]
		if math.IsNaN(loss) || loss <= 0 || loss >= trainLoss {
			t.Errorf("eval_loss = %g; want finite, positive and below the untrained training loss %g", loss, trainLoss)
		}
		if n != 24 {
			t.Errorf("eval_samples = %g; want 24 (val.json)", n)
		}
		if a, ok := answers.(float64); !ok || a <= 0 || a > n {
			t.Errorf("eval_answers = %v; want 1…%g (the synthetic answers are single words)", answers, n)
		}
		if acc, ok := r["eval_accuracy"].(float64); !ok || acc < 0 || acc > 1 {
			t.Errorf("eval_accuracy = %v; want a fraction", r["eval_accuracy"])
		}
		return
	}
	t.Errorf("metrics.jsonl has no evaluation at step %d", step)
}

// TestRunResumeIsBitExact is docs/RELIABILITY.md §7: run A takes 14 steps straight; run B is interrupted
// after step 7 (mid-epoch: an epoch is 12 steps of 2 micro-batches), and a new Run resumes it to step 14. B's
// losses, gradient norms, learning rates and α equal A's bit for bit, and so do the final weights, the AdamW
// moments and the trainer state.
func TestRunResumeIsBitExact(t *testing.T) {
	for _, precision := range []string{"float32", "bf16"} { // bf16: frozen matrices held in bfloat16
		t.Run(precision, func(t *testing.T) {
			sets := []string{"max_steps=14", "gradient_accumulation_steps=2"}
			if precision == "bf16" {
				sets = append(sets, "bf16=true")
			}
			testResumeIsBitExact(t, tinyConfig(t, sets...))
		})
	}
}

func testResumeIsBitExact(t *testing.T, a config.Config) {
	const k = 7
	mustRun(t, a, RunOptions{})

	b := a
	b.OutputDir = t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopAt := func(step int, loss float64) float64 {
		if step == k {
			cancel() // as a signal would: step k finishes, is saved, and Run returns
		}
		return loss
	}
	s, _, err := runTiny(t, ctx, b, RunOptions{Fault: stopAt})
	if !errors.Is(err, ErrInterrupted) || s.Steps != k {
		t.Fatalf("interrupted run: %d steps, %v; want %d steps, ErrInterrupted", s.Steps, err, k)
	}
	if c := stateOf(t, loadCheckpoint(t, b.OutputDir, k)).Cursor; c.Epoch != 0 || c.Position == 0 {
		t.Fatalf("checkpoint-%d data cursor = %+v; want mid-epoch 0", k, c)
	}
	if _, out := mustRun(t, b, RunOptions{}); !strings.Contains(out, "resumed") {
		t.Errorf("the second run did not log a resume:\n%s", out)
	}
	compareLogs(t, stepRecords(t, a.OutputDir), stepRecords(t, b.OutputDir), 14)
	compareCheckpoints(t, loadCheckpoint(t, a.OutputDir, 14), loadCheckpoint(t, b.OutputDir, 14))
}

// compareLogs checks that steps 1…n were logged in both runs with bitwise equal numbers.
func compareLogs(t *testing.T, a, b map[int]record, n int) {
	t.Helper()
	for step := 1; step <= n; step++ {
		ra, rb := a[step], b[step]
		if ra == nil || rb == nil {
			t.Errorf("step %d: logged in A %v, in B %v; want both", step, ra != nil, rb != nil)
			continue
		}
		for _, key := range []string{"loss", "grad_norm", "lr", "alpha", "epoch"} {
			if bits(ra, key) != bits(rb, key) {
				t.Errorf("step %d: %s = %v after resuming; want %v bit for bit", step, key, rb[key], ra[key])
			}
		}
	}
}

// compareCheckpoints checks that two checkpoints hold the same tensors and trainer state, byte for byte.
func compareCheckpoints(t *testing.T, a, b *checkpoints.Checkpoint) {
	t.Helper()
	if d := diffTensors(a.Weights, b.Weights); len(d) > 0 {
		t.Errorf("weights differ: %v", d)
	}
	if d := diffTensors(a.Optimizer, b.Optimizer); len(d) > 0 {
		t.Errorf("AdamW moments differ: %v", d)
	}
	if len(a.Optimizer) == 0 {
		t.Errorf("checkpoint %d has no optimizer state", a.Step)
	}
	if !bytes.Equal(a.State, b.State) {
		t.Errorf("trainer_state.json differs:\n%s\nwant\n%s", b.State, a.State)
	}
}

// TestRunResumeConfigDrift is docs/RELIABILITY.md §9: resuming with a changed key that defines the run fails
// with ErrConfigMismatch naming it; a changed learning rate or length is allowed with a warning.
func TestRunResumeConfigDrift(t *testing.T) {
	base := tinyConfig(t, "max_steps=2")
	mustRun(t, base, RunOptions{})
	ckpt := filepath.Join(base.OutputDir, "checkpoint-2")
	dataCopy := filepath.Join(t.TempDir(), "train.json")
	copyFile(t, "../testdata/tiny/train.json", dataCopy)
	for _, tc := range []struct {
		set, key string
		refused  bool
	}{
		{"seed=1", "seed", true},
		{"flex.n_sa=2", "flex.n_sa", true},
		{"data_path=" + dataCopy, "data_path", true},
		{"per_device_train_batch_size=2", "per_device_train_batch_size", true},
		{"learning_rate=1e-3", "learning_rate", false},
		{"max_steps=3", "max_steps", false},
	} {
		t.Run(tc.key, func(t *testing.T) {
			cfg := tinyConfig(t, "max_steps=2", tc.set)
			_, out, err := runTiny(t, context.Background(), cfg, RunOptions{Resume: ckpt})
			if tc.refused {
				if !errors.Is(err, checkpoints.ErrConfigMismatch) || !strings.Contains(err.Error(), "these keys changed: "+tc.key) {
					t.Errorf("resume with %s: err = %v; want ErrConfigMismatch naming only %s", tc.set, err, tc.key)
				}
				return
			}
			if err != nil {
				t.Fatalf("resume with %s: %v; want it allowed", tc.set, err)
			}
			if !strings.Contains(out, "resuming with changed settings") || !strings.Contains(out, tc.key) {
				t.Errorf("resume with %s logged no warning naming %s:\n%s", tc.set, tc.key, out)
			}
		})
	}
}

// TestRunSkipsNonFiniteStep is docs/RELIABILITY.md §12: a NaN loss at step 3 changes no weight and no
// AdamW state (checkpoints 2 and 3 are equal), is counted in the summary and the trainer state, and
// training goes on.
func TestRunSkipsNonFiniteStep(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=5", "save_steps=1", "save_total_limit=10")
	s, out := mustRun(t, cfg, RunOptions{Fault: nanAt(3)})
	if s.SkippedNonFinite != 1 || s.Steps != 5 {
		t.Errorf("summary: %d steps, %d skipped; want 5 steps, 1 skipped", s.Steps, s.SkippedNonFinite)
	}
	if !strings.Contains(out, "update skipped") {
		t.Errorf("no warning about the skipped step in the output:\n%s", out)
	}
	ck2, ck3, ck4 := loadCheckpoint(t, cfg.OutputDir, 2), loadCheckpoint(t, cfg.OutputDir, 3), loadCheckpoint(t, cfg.OutputDir, 4)
	if d := append(diffTensors(ck2.Weights, ck3.Weights), diffTensors(ck2.Optimizer, ck3.Optimizer)...); len(d) > 0 {
		t.Errorf("the skipped step 3 changed %v", d)
	}
	if d := diffTensors(ck3.Weights, ck4.Weights); len(d) == 0 {
		t.Error("step 4 changed no weight: training did not go on")
	}
	st2, st3, st4 := stateOf(t, ck2), stateOf(t, ck3), stateOf(t, ck4)
	for _, c := range []struct {
		what      string
		got, want int
	}{
		{"optimizer_step at 3", st3.OptimizerStep, st2.OptimizerStep},
		{"optimizer_step at 4", st4.OptimizerStep, st2.OptimizerStep + 1},
		{"skipped_nonfinite at 2", st2.SkippedNonFinite, 0},
		{"skipped_nonfinite at 3", st3.SkippedNonFinite, 1},
		{"skipped_nonfinite at 4", st4.SkippedNonFinite, 1},
		{"nonfinite_in_row at 4", st4.NonFiniteInRow, 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d; want %d", c.what, c.got, c.want)
		}
	}
	if _, logged := stepRecords(t, cfg.OutputDir)[3]; logged {
		t.Error("metrics.jsonl has a loss for the skipped step 3")
	}
}

// nanAt is a Fault that makes the loss of the given steps NaN.
func nanAt(steps ...int) func(int, float64) float64 {
	return func(step int, loss float64) float64 {
		for _, s := range steps {
			if s == step {
				return math.NaN()
			}
		}
		return loss
	}
}

// TestRunStopsAfterNonFiniteInRow: three non-finite steps in a row stop the run with an error naming the
// last; three that are not consecutive do not.
func TestRunStopsAfterNonFiniteInRow(t *testing.T) {
	for _, tc := range []struct {
		name    string
		nan     []int
		wantErr string // "" for success
		steps   int
		skipped int
	}{
		{"apart", []int{2, 3, 5}, "", 6, 3},
		{"in a row", []int{2, 3, 4}, "the last at step 4", 4, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig(t, "max_steps=6")
			s, _, err := runTiny(t, context.Background(), cfg, RunOptions{Fault: nanAt(tc.nan...)})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Run: %v; want success", err)
			case tc.wantErr != "" && (!errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Run: %v; want ErrNonFinite with %q", err, tc.wantErr)
			}
			if s.Steps != tc.steps || s.SkippedNonFinite != tc.skipped {
				t.Errorf("summary: %d steps, %d skipped; want %d, %d", s.Steps, s.SkippedNonFinite, tc.steps, tc.skipped)
			}
		})
	}
}

// TestRunInterruptedDuringEvaluationSaves: a cancellation that reaches the evaluation after a step still
// commits that step's checkpoint and returns ErrInterrupted.
func TestRunInterruptedDuringEvaluationSaves(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=6", "eval_steps=3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _, err := runTiny(t, ctx, cfg, RunOptions{Fault: func(step int, loss float64) float64 {
		if step == 3 {
			cancel()
		}
		return loss
	}})
	if !errors.Is(err, ErrInterrupted) || s.Steps != 3 {
		t.Fatalf("Run: %d steps, %v; want 3 steps, ErrInterrupted", s.Steps, err)
	}
	if e, err := checkpoints.Latest(cfg.OutputDir); err != nil || e.Step != 3 {
		t.Errorf("Latest = %+v, %v; want step 3", e, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunEpochCountsTrainingSplit: the logged epoch is the fraction of the training split read. With 16 of
// the 96 records held out as val_size, an epoch is 20 batches of 4, 10 optimizer steps of 2 micro-batches.
func TestRunEpochCountsTrainingSplit(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=10", "eval_data_path=", "val_size=16")
	mustRun(t, cfg, RunOptions{})
	recs := stepRecords(t, cfg.OutputDir)
	for _, c := range []struct {
		step  int
		epoch float64
	}{{1, 0.1}, {5, 0.5}, {10, 1}} {
		if got := recs[c.step]["epoch"]; got != c.epoch {
			t.Errorf("epoch logged at step %d = %v; want %g", c.step, got, c.epoch)
		}
	}
}
