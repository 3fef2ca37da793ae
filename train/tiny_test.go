package train

//go:generate go run ../internal/tinydata ../testdata/tiny

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/flextrain/flextrain/config"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/safetensors"
)

// tinyConfig is configs/tiny.yaml pointed at the repository's testdata/tiny (the tests run in train/), with
// a fresh temporary output_dir, no evaluation, a save only at the end, a log record every step, and then
// the overrides ("max_steps=20").
func tinyConfig(t *testing.T, overrides ...string) config.Config {
	t.Helper()
	base := []string{"output_dir=" + t.TempDir(),
		"tokenizer_path=../testdata/tiny/tokenizer.json", "data_path=../testdata/tiny/train.json",
		"image_folder=../testdata/tiny/images", "eval_data_path=../testdata/tiny/val.json",
		"eval_steps=0", "save_steps=0", "logging_steps=1"}
	cfg, err := config.Load("../configs/tiny.yaml", append(base, overrides...))
	if err != nil {
		t.Fatalf("config.Load(configs/tiny.yaml): %v", err)
	}
	return cfg
}

// syncBuffer is a bytes.Buffer safe for the data loader's goroutines to log into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runTiny runs cfg with opts, capturing the run's output; the output is logged when the test fails.
func runTiny(t *testing.T, ctx context.Context, cfg config.Config, opts RunOptions) (Summary, string, error) {
	t.Helper()
	out := &syncBuffer{}
	opts.Out, opts.Logger = out, slog.New(slog.NewTextHandler(out, nil))
	s, err := Run(ctx, cfg, opts)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("output of the run in %s:\n%s", cfg.OutputDir, out)
		}
	})
	return s, out.String(), err
}

// mustRun is runTiny for a run that must succeed.
func mustRun(t *testing.T, cfg config.Config, opts RunOptions) (Summary, string) {
	t.Helper()
	s, out, err := runTiny(t, context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return s, out
}

// record is one line of metrics.jsonl.
type record map[string]any

// readMetrics returns the records of dir/metrics.jsonl in order.
func readMetrics(t *testing.T, dir string) []record {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("metrics.jsonl line %d: %v", len(out)+1, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stepRecords returns the training-step records of dir/metrics.jsonl (those with a loss) by step; a step
// logged twice keeps its last record.
func stepRecords(t *testing.T, dir string) map[int]record {
	t.Helper()
	out := map[int]record{}
	for _, r := range readMetrics(t, dir) {
		if _, ok := r["loss"]; ok {
			out[int(r["step"].(float64))] = r
		}
	}
	return out
}

// bits is the exact bit pattern of a logged number (JSON's shortest form reads back to the same float64).
func bits(r record, key string) uint64 { return math.Float64bits(r[key].(float64)) }

// loadCheckpoint loads dir/checkpoint-<step>.
func loadCheckpoint(t *testing.T, dir string, step int) *checkpoints.Checkpoint {
	t.Helper()
	ck, err := checkpoints.Load(filepath.Join(dir, "checkpoint-"+strconv.Itoa(step)))
	if err != nil {
		t.Fatalf("load checkpoint %d of %s: %v", step, dir, err)
	}
	return ck
}

// stateOf decodes a checkpoint's trainer_state.json.
func stateOf(t *testing.T, ck *checkpoints.Checkpoint) State {
	t.Helper()
	var s State
	if err := json.Unmarshal(ck.State, &s); err != nil {
		t.Fatalf("trainer_state.json of step %d: %v", ck.Step, err)
	}
	return s
}

// diffTensors lists the names whose dtype, shape or bytes differ between a and b, and those only one has.
func diffTensors(a, b map[string]safetensors.Tensor) []string {
	var out []string
	for name, x := range a {
		y, ok := b[name]
		if !ok || x.DType != y.DType || !slices.Equal(x.Shape, y.Shape) || !bytes.Equal(x.Data, y.Data) {
			out = append(out, name)
		}
	}
	for name := range b {
		if _, ok := a[name]; !ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
