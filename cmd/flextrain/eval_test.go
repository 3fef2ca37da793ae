package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// evaluated is the part of the eval output the tests read.
type evaluated struct {
	Checkpoint string  `json:"checkpoint"`
	Step       int     `json:"step"`
	Loss       float64 `json:"eval_loss"`
	Samples    int     `json:"eval_samples"`
	Accuracy   float64 `json:"eval_accuracy"`
	Answers    int     `json:"eval_answers"`
	ByKind     map[string]struct {
		Samples, Answers, Correct int
		Accuracy, Loss            float64
	} `json:"by_kind"`
}

func evalJSON(t *testing.T, args ...string) evaluated {
	t.Helper()
	var out bytes.Buffer
	if err := evalMain(args, &out); err != nil {
		t.Fatalf("eval %v: %v", args, err)
	}
	if n := strings.Count(strings.TrimSpace(out.String()), "\n"); n != 0 {
		t.Errorf("eval printed %d lines; want one JSON object", n+1)
	}
	var got evaluated
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("eval printed %q: %v", out.String(), err)
	}
	return got
}

// testEval: eval of the validation split agrees with the evaluation the run logged at the same step,
// and counts each kind as the generator did.
func testEval(t *testing.T, r run) {
	got := evalJSON(t, "--checkpoint", r.ckpt, "--data", r.data.Val)
	logged := lastEval(t, filepath.Join(r.metrics, "metrics.jsonl"))
	if got.Checkpoint != r.ckpt || got.Step != 3 || got.Samples != r.data.Counts["val"] {
		t.Errorf("eval: checkpoint %s, step %d, %d samples; want %s, 3, %d", got.Checkpoint, got.Step, got.Samples, r.ckpt, r.data.Counts["val"])
	}
	if math.Abs(got.Loss-logged["eval_loss"]) > 1e-5*logged["eval_loss"] || got.Accuracy != logged["eval_accuracy"] {
		t.Errorf("eval: loss %g, accuracy %g; want the run's logged %g, %g", got.Loss, got.Accuracy, logged["eval_loss"], logged["eval_accuracy"])
	}
	samples := 0
	for kind, k := range got.ByKind {
		if want := r.data.Counts["val."+kind]; k.Samples != want {
			t.Errorf("kind %s: %d samples; want %d", kind, k.Samples, want)
		}
		samples += k.Samples
	}
	if samples != got.Samples {
		t.Errorf("kinds add up to %d samples; want %d", samples, got.Samples)
	}
	// Without "kind" fields there is no by_kind; the run evaluated its batches split by kind, so the loss agrees
	// up to float rounding; the images are found through --image-folder.
	plain := filepath.Join(t.TempDir(), "plain.json")
	if err := os.WriteFile(plain, []byte(strings.ReplaceAll(string(readFile(t, r.data.Val)), `"kind":`, `"other":`)), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := evalJSON(t, "--checkpoint", r.ckpt, "--data", plain, "--image-folder", r.data.ImageFolder); p.ByKind != nil || math.Abs(p.Loss-logged["eval_loss"]) > 1e-5*logged["eval_loss"] {
		t.Errorf("eval without kinds: by_kind %v, loss %g; want none, the logged %g", p.ByKind, p.Loss, logged["eval_loss"])
	}
}

// lastEval returns the last evaluation record of a metrics.jsonl.
func lastEval(t *testing.T, path string) map[string]float64 {
	t.Helper()
	var last map[string]float64
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, path)))
	for sc.Scan() {
		var rec map[string]float64
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			if _, ok := rec["eval_loss"]; ok {
				last = rec
			}
		}
	}
	if last == nil {
		t.Fatalf("%s has no evaluation", path)
	}
	return last
}

func TestEvalErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		name string
		args []string
		text string // in the message
	}{
		{"no checkpoint there", []string{"--checkpoint", missing, "--data", "x.json"}, missing},
		{"no --data", []string{"--checkpoint", missing}, "data"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if err := evalMain(tt.args, &out); err == nil || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: err = %v; want an error mentioning %q", tt.name, err, tt.text)
		}
	}
}
