package train

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/safetensors"
)

// rewriteCheckpoint loads the checkpoint of step in dir, lets edit change it, and saves it again with valid
// checksums: a checkpoint crafted by hand, which only the trainer's own checks can refuse.
func rewriteCheckpoint(t *testing.T, dir string, step int, edit func(ck *checkpoints.Checkpoint)) {
	t.Helper()
	ck := loadCheckpoint(t, dir, step)
	edit(ck)
	if _, err := checkpoints.Save(dir, ck); err != nil {
		t.Fatal(err)
	}
}

// editState returns an edit that sets one field of trainer_state.json to a raw JSON value.
func editState(field, value string) func(ck *checkpoints.Checkpoint) {
	return func(ck *checkpoints.Checkpoint) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(ck.State, &m); err != nil {
			panic(err)
		}
		m[field] = json.RawMessage(value)
		ck.State, _ = json.Marshal(m)
	}
}

// TestResumeRefusesBadState: a trainer_state.json whose fields contradict the checkpoint, the run or each
// other is refused with ErrCorrupt naming the file and the field, never a panic or a run that trains
// nothing.
func TestResumeRefusesBadState(t *testing.T) {
	base := tinyConfig(t, "max_steps=4")
	mustRun(t, base, RunOptions{})
	for _, tc := range []struct{ field, value string }{
		{"optimizer_step", "-3"},
		{"optimizer_step", "5"},
		{"global_step", "1000000"},
		{"nonfinite_in_row", "7"},
		{"skipped_nonfinite", "-1"},
		{"seed", "1"},
		{"alpha", "2"},
		{"learning_rate", "-1"},
		{"epoch", "-0.5"},
		{"best_step", "3"},
		{"data_cursor", `{"epoch": 0, "position": 100000}`},
		{"data_counts", `{"records": 4, "samples": 9, "with_image": 9, "text_only": 0, "tokens": 1, "truncated": 0, "skipped": 0, "bad": {}}`},
		{"frozen_weights_sha256", `"zz"`},
		{"data_fingerprint", `{"size": 1, "method": "md5", "sha256": "x"}`},
		{"unknown_field", "1"},
	} {
		t.Run(tc.field+"="+tc.value, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, filepath.Join(base.OutputDir, "checkpoint-4"), filepath.Join(dir, "checkpoint-4"))
			rewriteCheckpoint(t, dir, 4, editState(tc.field, tc.value))
			cfg := base
			cfg.OutputDir, cfg.MaxSteps = dir, 6
			_, _, err := runTiny(t, context.Background(), cfg, RunOptions{})
			if !errors.Is(err, checkpoints.ErrCorrupt) || !strings.Contains(err.Error(), "trainer_state.json") || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("resume with %s = %s: %v; want ErrCorrupt naming trainer_state.json and %s", tc.field, tc.value, err, tc.field)
			}
		})
	}
}

// TestResumeRefusesSwappedShape: a trained tensor stored with its dimensions swapped (the right number of
// values, the wrong meaning) is refused by resume, by inference.Load (eval, predict, export) and by
// inference.CheckCheckpoint (inspect).
func TestResumeRefusesSwappedShape(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=2")
	mustRun(t, cfg, RunOptions{})
	rewriteCheckpoint(t, cfg.OutputDir, 2, func(ck *checkpoints.Checkpoint) {
		w := ck.Weights["lm_head.weight"]
		w.Shape = []int{w.Shape[1], w.Shape[0]}
		ck.Weights["lm_head.weight"] = w
	})
	want := "shape [64 144]"
	cfg.MaxSteps = 3
	if _, _, err := runTiny(t, context.Background(), cfg, RunOptions{}); !errors.Is(err, checkpoints.ErrConfigMismatch) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "lm_head.weight") {
		t.Errorf("resume: %v; want ErrConfigMismatch with %q", err, want)
	}
	if _, err := inference.Load(filepath.Join(cfg.OutputDir, "checkpoint-2"), inference.Options{}); !errors.Is(err, checkpoints.ErrConfigMismatch) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "lm_head.weight") {
		t.Errorf("inference.Load: %v; want ErrConfigMismatch with %q", err, want)
	}
	ck := loadCheckpoint(t, cfg.OutputDir, 2)
	if err := inference.CheckCheckpoint(ck); err == nil || !strings.Contains(err.Error(), "lm_head.weight") {
		t.Errorf("inference.CheckCheckpoint: %v; want an error naming lm_head.weight", err)
	}
}

// TestResumeRefusesEditedData: a data file edited between a run and its resume is refused, naming
// data_path and the flag that goes on anyway; with AllowDataChange the run resumes.
func TestResumeRefusesEditedData(t *testing.T) {
	data := filepath.Join(t.TempDir(), "train.json")
	copyFile(t, "../testdata/tiny/train.json", data)
	cfg := tinyConfig(t, "max_steps=2", "data_path="+data)
	mustRun(t, cfg, RunOptions{})
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, append(b, '\n'), 0o644); err != nil { // one byte more, the same records
		t.Fatal(err)
	}
	cfg.MaxSteps = 3
	_, _, err = runTiny(t, context.Background(), cfg, RunOptions{})
	if !errors.Is(err, checkpoints.ErrConfigMismatch) || !strings.Contains(err.Error(), "data_path") || !strings.Contains(err.Error(), "--allow-data-change") {
		t.Fatalf("resume on an edited data file: %v; want ErrConfigMismatch naming data_path and --allow-data-change", err)
	}
	if _, out := mustRun(t, cfg, RunOptions{AllowDataChange: true}); !strings.Contains(out, "resumed") {
		t.Errorf("with AllowDataChange the run did not resume:\n%s", out)
	}
}

// copyDir copies the files of the folder from into a new folder to.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		copyFile(t, filepath.Join(from, e.Name()), filepath.Join(to, e.Name()))
	}
}

// TestResumeBoundsDecompression: a checkpoint whose weights.st.zst decompresses to far more than the run's
// tensors can hold (here 256 MiB of zeros, 10 KB on disk once compressed) is refused from its header, as
// ErrCorrupt naming the file, before its payload is allocated: the bound comes from the model's shapes.
func TestResumeBoundsDecompression(t *testing.T) {
	cfg := tinyConfig(t, "max_steps=2")
	mustRun(t, cfg, RunOptions{})
	rewriteCheckpoint(t, cfg.OutputDir, 2, func(ck *checkpoints.Checkpoint) {
		ck.Weights["padding"] = safetensors.Tensor{DType: "U8", Shape: []int{256 << 20}, Data: make([]byte, 256<<20)}
	})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cfg.MaxSteps = 3
	_, _, err := runTiny(t, context.Background(), cfg, RunOptions{})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, checkpoints.ErrCorrupt) || !strings.Contains(err.Error(), "weights.st.zst") {
		t.Fatalf("resume of a checkpoint past the model's size: %v; want ErrCorrupt naming weights.st.zst", err)
	}
	t.Logf("refused: %v", err)
	if used := after.TotalAlloc - before.TotalAlloc; used > 64<<20 {
		t.Errorf("refusing it allocated %d MiB; want far less than the 256 MiB it claims", used>>20)
	}
}

// TestResumeRefusesOtherBaseWeights: the frozen weights a checkpoint was trained on are part of it (their
// SHA-256 in trainer_state.json): resuming over a base model file whose frozen tensors changed is refused.
func TestResumeRefusesOtherBaseWeights(t *testing.T) {
	base := filepath.Join(t.TempDir(), "base.safetensors")
	cfg := tinyConfig(t, "max_steps=2", "model_name_or_path="+base)
	write := func(seed uint64) {
		if err := checkpoints.WriteSafetensors(base, model.InitWeights(cfg.Model(), tensor.Float32, seed).Tensors(), nil); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	mustRun(t, cfg, RunOptions{})
	write(2) // same names and shapes, other values: the frozen tower differs
	cfg.MaxSteps = 3
	_, _, err := runTiny(t, context.Background(), cfg, RunOptions{})
	if !errors.Is(err, checkpoints.ErrConfigMismatch) || !strings.Contains(err.Error(), "frozen base weights differ") {
		t.Errorf("resume over other base weights: %v; want ErrConfigMismatch about the frozen base weights", err)
	}
}
