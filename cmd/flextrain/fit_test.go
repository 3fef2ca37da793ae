package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/flextrain/flextrain/checkpoints"
)

// These tests run the flextrain binary on configs/tiny.yaml, from the repository root, as a user would.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// flextrainBin builds the command once per test binary and returns its path.
func flextrainBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "flextrain-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "flextrain")
		args := append(append([]string{"build"}, buildTags()...), "-o", binPath, ".")
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// fitCmd is `flextrain fit --config configs/tiny.yaml --set output_dir=dir --set …`, run from the repository
// root, killed if it outlives the test's patience.
func fitCmd(t *testing.T, ctx context.Context, dir string, sets ...string) *exec.Cmd {
	args := []string{"fit", "--config", "configs/tiny.yaml", "--set", "output_dir=" + dir}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, flextrainBin(t), args...)
	cmd.Dir = filepath.Join("..", "..")
	return cmd
}

// fit runs flextrain fit to its end and fails the test unless it exits 0.
func fit(t *testing.T, dir string, sets ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := fitCmd(t, ctx, dir, sets...).CombinedOutput()
	if err != nil {
		t.Fatalf("flextrain fit %v: %v\n%s", sets, err, out)
	}
	return string(out)
}

// TestFitWritesMetrics runs three steps through the binary and reads metrics.jsonl.
func TestFitWritesMetrics(t *testing.T) {
	dir := t.TempDir()
	out := fit(t, dir, "max_steps=3", "eval_steps=0")
	recs := stepLosses(t, dir)
	if len(recs) != 3 {
		t.Fatalf("metrics.jsonl has %d step records; want 3\n%s", len(recs), out)
	}
	for step, r := range recs {
		for _, key := range []string{"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_sec", "elapsed_s", "alpha", "hr_selected_frac"} {
			if _, ok := r[key].(float64); !ok {
				t.Errorf("step %d: metrics key %s = %v; want a number", step, key, r[key])
			}
		}
	}
	if e, err := checkpoints.Latest(dir); err != nil || e.Step != 3 {
		t.Errorf("Latest = %+v, %v; want step 3", e, err)
	}
	if !strings.Contains(out, "step 3/3") || !strings.Contains(out, `"global_step":3`) {
		t.Errorf("output lacks the step line or the summary:\n%s", out)
	}
}

// signalSets make the trajectory independent of max_steps (constant learning rate, α = 1 from the start), so
// that an interrupted run of "endless" length, its resumption to step n and a straight run to step n take
// the same steps.
var signalSets = []string{"lr_scheduler_type=constant", "warmup_ratio=0", "flex.alpha_warmup_ratio=0",
	"eval_steps=0", "save_steps=0", "logging_steps=1"}

// TestFitSignals is docs/RELIABILITY.md §11: SIGINT or SIGTERM after the first step line → the step in progress
// finishes, its checkpoint is committed (the newest equals the last logged step), and the exit status is
// 130 or 143. The interrupted run then resumes to 4 more steps, and its losses and final tensors equal
// those of a straight run bit for bit.
func TestFitSignals(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			last, code, stderr := interrupt(t, dir, 1, nil, tc.sig)
			if code != tc.code {
				t.Fatalf("exit status after %v = %d; want %d\nstderr:\n%s", tc.sig, code, tc.code, stderr)
			}
			if e, err := checkpoints.Latest(dir); err != nil || e.Step != last || last == 0 {
				t.Fatalf("after %v: Latest = %+v, %v; want the last logged step %d", tc.sig, e, err, last)
			}
			if tc.sig != syscall.SIGINT {
				return // one resume comparison is enough
			}
			end := fmt.Sprint("max_steps=", last+4)
			if out := fit(t, dir, append(signalSets, end)...); !strings.Contains(out, "resumed") {
				t.Errorf("the second run did not resume:\n%s", out)
			}
			straight := t.TempDir()
			fit(t, straight, append(signalSets, end)...)
			compareRuns(t, straight, dir, last+4)
		})
	}
}

// TestFitSecondSignalQuits: a second SIGINT right after the first exits at once with 130. The run saves
// every step and is signalled after its third step line, so checkpoints exist whatever the signals cut
// short: every one listed loads, and the next run resumes from the newest and leaves no temporary file of
// the save the signals may have interrupted.
func TestFitSecondSignalQuits(t *testing.T) {
	dir := t.TempDir()
	last, code, stderr := interrupt(t, dir, 3, []string{"save_steps=1"}, syscall.SIGINT, syscall.SIGINT)
	if code != 130 {
		t.Fatalf("exit status after two SIGINTs = %d; want 130\nstderr:\n%s", code, stderr)
	}
	entries, err := checkpoints.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 || entries[len(entries)-1].Step < last-1 {
		t.Fatalf("checkpoints after two SIGINTs at step %d: %+v; want at least the one of step %d", last, entries, last-1)
	}
	for _, e := range entries {
		if _, err := checkpoints.Load(e.Path); err != nil {
			t.Errorf("listed checkpoint %s does not load: %v", e.Path, err)
		}
	}
	if out := fit(t, dir, append(signalSets, "save_steps=1", fmt.Sprint("max_steps=", last+1))...); !strings.Contains(out, "resumed") {
		t.Errorf("the next run did not resume:\n%s", out)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(n.Name(), ".tmp") {
			t.Errorf("%s is left in output_dir after the next run", n.Name())
		}
	}
}

// interrupt starts an endless run in dir with the extra settings and sends sigs, one after the other, after
// the step line of step after. It returns the last step logged, the exit status and the standard error.
func interrupt(t *testing.T, dir string, after int, extra []string, sigs ...syscall.Signal) (last, code int, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sets := append(append(slices.Clone(signalSets), extra...), "max_steps=1000000")
	cmd := fitCmd(t, ctx, dir, sets...)
	sc, errBuf := startLogged(t, cmd)
	for sc.Scan() {
		step, ok := stepOfLine(sc.Text())
		if !ok {
			continue
		}
		if last = step; len(sigs) > 0 && step >= after {
			for _, s := range sigs {
				if err := cmd.Process.Signal(s); err != nil {
					t.Fatal(err)
				}
			}
			sigs = nil
		}
	}
	cmd.Wait()
	t.Logf("signalled after the line of step %d: exit %d, last logged step %d", after, cmd.ProcessState.ExitCode(), last)
	return last, cmd.ProcessState.ExitCode(), errBuf.String()
}

// startLogged starts cmd with its standard error collected, and returns a scanner of its standard output.
func startLogged(t *testing.T, cmd *exec.Cmd) (*bufio.Scanner, *bytes.Buffer) {
	t.Helper()
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return bufio.NewScanner(stdout), &errBuf
}

// stepOfLine reads N from a log line "step N/M | …".
func stepOfLine(line string) (int, bool) {
	rest, ok := strings.CutPrefix(line, "step ")
	if !ok {
		return 0, false
	}
	n, _, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, false
	}
	step, err := strconv.Atoi(n)
	return step, err == nil
}

// stepLosses returns the training-step records of dir/metrics.jsonl by step; a step logged twice keeps its
// last record.
func stepLosses(t *testing.T, dir string) map[int]map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]map[string]any{}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("metrics.jsonl line %d: %v", i+1, err)
		}
		if _, ok := r["loss"]; ok {
			out[int(r["step"].(float64))] = r
		}
	}
	return out
}

// compareRuns checks that steps 1…n have bitwise equal losses and gradient norms in both output folders and
// that their checkpoints of step n hold the same tensors.
func compareRuns(t *testing.T, want, got string, n int) {
	t.Helper()
	a, b := stepLosses(t, want), stepLosses(t, got)
	for step := 1; step <= n; step++ {
		for _, key := range []string{"loss", "grad_norm"} {
			x, okx := a[step][key].(float64)
			y, oky := b[step][key].(float64)
			if !okx || !oky || math.Float64bits(x) != math.Float64bits(y) {
				t.Errorf("step %d: %s = %v after the interruption; want %v bit for bit", step, key, b[step][key], a[step][key])
			}
		}
	}
	ca, errA := checkpoints.Load(filepath.Join(want, fmt.Sprint("checkpoint-", n)))
	cb, errB := checkpoints.Load(filepath.Join(got, fmt.Sprint("checkpoint-", n)))
	if errA != nil || errB != nil {
		t.Fatalf("load the final checkpoints: %v, %v", errA, errB)
	}
	for name, x := range ca.Weights {
		if !bytes.Equal(x.Data, cb.Weights[name].Data) {
			t.Errorf("final weight %s differs", name)
		}
	}
	for name, x := range ca.Optimizer {
		if !bytes.Equal(x.Data, cb.Optimizer[name].Data) {
			t.Errorf("final AdamW state %s differs", name)
		}
	}
	if len(ca.Weights) != len(cb.Weights) || len(ca.Optimizer) != len(cb.Optimizer) {
		t.Errorf("the final checkpoints hold %d+%d and %d+%d tensors", len(ca.Weights), len(ca.Optimizer), len(cb.Weights), len(cb.Optimizer))
	}
}

// TestFitOverwriteOutputDir: `fit --resume none` in an output_dir that holds a run fails and names the
// flag; with --overwrite_output_dir it trains afresh.
func TestFitOverwriteOutputDir(t *testing.T) {
	dir := t.TempDir()
	fit(t, dir, "max_steps=2", "eval_steps=0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := fitCmd(t, ctx, dir, "max_steps=1", "eval_steps=0")
	cmd.Args = append(cmd.Args, "--resume", "none")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "--overwrite_output_dir") {
		t.Fatalf("fit --resume none in a used output_dir: %v\n%s\nwant a failure naming --overwrite_output_dir", err, out)
	}
	cmd = fitCmd(t, ctx, dir, "max_steps=1", "eval_steps=0")
	cmd.Args = append(cmd.Args, "--resume", "none", "--overwrite_output_dir")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fit --overwrite_output_dir: %v\n%s", err, out)
	}
	if e, err := checkpoints.Latest(dir); err != nil || e.Step != 1 {
		t.Errorf("Latest after overwriting = %+v, %v; want the new run's step 1", e, err)
	}
}
