package train

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/flextrain/flextrain/checkpoints"
)

// snapshot maps every file under dir to the SHA-256 of its bytes ("dir" for a folder), to show that a
// refused run touched nothing.
func snapshot(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			out[p] = sha256.Sum256([]byte("dir"))
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertUnchanged fails the test when dir differs from the snapshot before.
func assertUnchanged(t *testing.T, dir string, before map[string][32]byte) {
	t.Helper()
	after := snapshot(t, dir)
	for p, h := range before {
		if after[p] != h {
			t.Errorf("%s changed or vanished", p)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// stepsIn lists the steps of the complete checkpoints in dir.
func stepsIn(t *testing.T, dir string) []int {
	t.Helper()
	list, err := checkpoints.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var s []int
	for _, e := range list {
		s = append(s, e.Step)
	}
	return s
}

// corruptFile flips one byte in the middle of path.
func corruptFile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunRollbackKeepsItsCheckpoints: resuming a checkpoint older than save_total_limit newer ones (a
// rollback with --resume PATH, or auto-resume falling back past damaged checkpoints) and saving keeps the
// checkpoint just written and the one resumed; the newer ones are moved aside, never deleted.
func TestRunRollbackKeepsItsCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resume  func(dir string) string
		corrupt []int // checkpoints damaged before the resume
	}{
		{"resume path", func(dir string) string { return filepath.Join(dir, "checkpoint-6") }, nil},
		{"auto past damaged", func(string) string { return "auto" }, []int{8, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := tinyConfig(t, "max_steps=10", "save_steps=2", "save_total_limit=3")
			mustRun(t, first, RunOptions{})
			dir := first.OutputDir
			for _, step := range tc.corrupt {
				corruptFile(t, filepath.Join(dir, checkpointName(step), "weights.st.zst"))
			}
			again := first
			again.SaveTotalLimit, again.SaveSteps, again.MaxSteps = 2, 1, 7
			if _, out := mustRun(t, again, RunOptions{Resume: tc.resume(dir)}); !strings.Contains(out, "moved aside") {
				t.Errorf("the rollback logged no warning about the newer checkpoints:\n%s", out)
			}
			if got := stepsIn(t, dir); len(got) != 2 || got[0] != 6 || got[1] != 7 {
				t.Errorf("checkpoints after the rollback: %v; want [6 7]", got)
			}
			loadCheckpoint(t, dir, 7)
			moved, _ := filepath.Glob(filepath.Join(dir, "abandoned-after-step-6-*", "checkpoint-*"))
			if len(moved) != 2 {
				t.Errorf("set aside: %v; want checkpoint-8 and checkpoint-10", moved)
			}
		})
	}
}

func checkpointName(step int) string { return "checkpoint-" + strconv.Itoa(step) }

// TestRunFreshInUsedOutputDir: a fresh run (--resume none) in an output_dir that holds another run is
// refused and changes nothing; with Overwrite it removes that run's checkpoints and starts its metrics anew.
func TestRunFreshInUsedOutputDir(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=2", "save_steps=1")
	mustRun(t, cfg, RunOptions{})
	before := snapshot(t, cfg.OutputDir)
	_, _, err := runTiny(t, context.Background(), cfg, RunOptions{Resume: "none"})
	if !errors.Is(err, ErrOutputDirInUse) || !strings.Contains(err.Error(), "checkpoint-2") || !strings.Contains(err.Error(), "--overwrite_output_dir") {
		t.Fatalf("fresh run in a used output_dir: %v; want ErrOutputDirInUse naming checkpoint-2 and the flag", err)
	}
	assertUnchanged(t, cfg.OutputDir, before)

	cfg.MaxSteps = 1
	mustRun(t, cfg, RunOptions{Resume: "none", Overwrite: true})
	if got := stepsIn(t, cfg.OutputDir); len(got) != 1 || got[0] != 1 {
		t.Errorf("checkpoints after overwriting: %v; want only the new run's [1]", got)
	}
	if recs := stepRecords(t, cfg.OutputDir); len(recs) != 1 {
		t.Errorf("metrics.jsonl holds %d step records after overwriting; want the new run's 1", len(recs))
	}
	if _, _, err := runTiny(t, context.Background(), cfg, RunOptions{Resume: filepath.Join(cfg.OutputDir, "checkpoint-1"), Overwrite: true}); err == nil {
		t.Error("Overwrite with a checkpoint path to resume was accepted; want an error")
	}
}

// TestRunRefusedResumeTouchesNothing: a resume refused for config drift leaves output_dir, config.yaml and
// metrics.jsonl included, as it was.
func TestRunRefusedResumeTouchesNothing(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=2")
	mustRun(t, cfg, RunOptions{})
	before := snapshot(t, cfg.OutputDir)
	drift := cfg
	drift.Seed++
	if _, _, err := runTiny(t, context.Background(), drift, RunOptions{}); !errors.Is(err, checkpoints.ErrConfigMismatch) {
		t.Fatalf("resume with another seed: %v; want ErrConfigMismatch", err)
	}
	assertUnchanged(t, cfg.OutputDir, before)
}

// TestRunCancelledDuringSetup: a signal before the first step ends the run with ErrInterrupted, saving
// nothing and creating no output_dir.
func TestRunCancelledDuringSetup(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=2")
	cfg.OutputDir = filepath.Join(cfg.OutputDir, "run")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := runTiny(t, ctx, cfg, RunOptions{}); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Run with a cancelled context: %v; want ErrInterrupted", err)
	}
	if _, err := os.Stat(cfg.OutputDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("output_dir exists after a run cancelled in setup: %v", err)
	}
}

// failCreate is the real file system, except that creating a file whose name starts with prefix fails as
// on a full disk.
type failCreate struct {
	checkpoints.FS
	prefix string
}

func (f failCreate) Create(path string) (checkpoints.File, error) {
	if strings.HasPrefix(filepath.Base(path), f.prefix) {
		return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.ENOSPC}
	}
	return f.FS.Create(path)
}

// TestRunConfigWriteDiskFull: config.yaml is written atomically. A full disk stops the run with an error
// naming it, and the config.yaml of the run before is still whole.
func TestRunConfigWriteDiskFull(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=2")
	mustRun(t, cfg, RunOptions{})
	path := filepath.Join(cfg.OutputDir, "config.yaml")
	before, err := os.ReadFile(path)
	if err != nil || len(before) == 0 {
		t.Fatalf("config.yaml of the first run: %d bytes, %v", len(before), err)
	}
	cfg.MaxSteps = 3
	_, _, err = runTiny(t, context.Background(), cfg, RunOptions{FS: failCreate{checkpoints.OS, "config.yaml"}})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "config.yaml") {
		t.Fatalf("Run on a full disk: %v; want ENOSPC naming config.yaml", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("config.yaml after the failed write: %d bytes; want the earlier %d", len(after), len(before))
	}
	if leftovers, _ := filepath.Glob(path + ".tmp-*"); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestRunMetricsWriteFailureStops: metrics that cannot be written stop the run (ErrMetrics, wrapping the
// cause and naming the file) after the step that could not be logged is saved.
func TestRunMetricsWriteFailureStops(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	cfg := tinyConfig(t, "max_steps=4")
	if err := os.MkdirAll(cfg.OutputDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/full", filepath.Join(cfg.OutputDir, "metrics.jsonl")); err != nil {
		t.Fatal(err)
	}
	s, _, err := runTiny(t, context.Background(), cfg, RunOptions{Overwrite: true})
	if !errors.Is(err, ErrMetrics) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "metrics.jsonl") {
		t.Fatalf("Run with metrics on a full device: %v; want ErrMetrics wrapping ENOSPC and naming metrics.jsonl", err)
	}
	if s.Steps != 1 {
		t.Errorf("the run stopped after %d steps; want 1, the first logged", s.Steps)
	}
	if e, err := checkpoints.Latest(cfg.OutputDir); err != nil || e.Step != 1 {
		t.Errorf("Latest = %+v, %v; want the step that could not be logged, 1", e, err)
	}
}
