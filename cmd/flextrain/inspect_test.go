package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/checkpoints"
)

// inspected is the part of `inspect --json` the tests read.
type inspected struct {
	Step     int    `json:"step"`
	Verified bool   `json:"verified"`
	Error    string `json:"error"`
	Files    []struct {
		Name    string
		Size    int64
		RawSize int64 `json:"raw_size"`
	} `json:"files"`
	Tensors []struct {
		Group, Name, DType string
		Shape              []int
		Bytes              int
	} `json:"tensors"`
	StoredBytes int64   `json:"stored_bytes"`
	RawBytes    int64   `json:"raw_bytes"`
	Ratio       float64 `json:"compression_ratio"`
}

func inspectJSONOf(t *testing.T, path string) (inspected, error) {
	t.Helper()
	var out bytes.Buffer
	err := inspectMain([]string{path, "--json"}, &out)
	var got inspected
	if jerr := json.Unmarshal(out.Bytes(), &got); jerr != nil {
		t.Fatalf("inspect %s --json printed %q: %v", path, out.String(), jerr)
	}
	return got, err
}

// testInspect: every tensor of the checkpoint is listed with its shape and size; sizes add up.
func testInspect(t *testing.T, r run) {
	got, err := inspectJSONOf(t, r.ckpt)
	if err != nil || !got.Verified || got.Step != 3 {
		t.Fatalf("inspect: step %d, verified %v, err %v; want step 3, verified", got.Step, got.Verified, err)
	}
	ck, err := checkpoints.Load(r.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(ck.Weights) + len(ck.Optimizer); len(got.Tensors) != want {
		t.Errorf("inspect lists %d tensors; want %d weights and optimizer tensors", len(got.Tensors), want)
	}
	for _, ts := range got.Tensors {
		src := ck.Weights
		if ts.Group == "optimizer" {
			src = ck.Optimizer
		}
		if want := src[ts.Name]; len(want.Data) != ts.Bytes || string(want.DType) != ts.DType || len(want.Shape) != len(ts.Shape) {
			t.Errorf("%s %s: %s%v %d bytes; want %s%v %d bytes", ts.Group, ts.Name, ts.DType, ts.Shape, ts.Bytes, want.DType, want.Shape, len(want.Data))
		}
	}
	var stored int64
	for _, f := range got.Files {
		st, err := os.Stat(filepath.Join(r.ckpt, f.Name))
		if err != nil || st.Size() != f.Size {
			t.Errorf("file %s: listed %d bytes; on disk %v (%v)", f.Name, f.Size, st.Size(), err)
		}
		stored += f.Size
	}
	if stored != got.StoredBytes || got.Ratio <= 0 || got.Ratio != float64(got.RawBytes)/float64(got.StoredBytes) {
		t.Errorf("stored %d (files add up to %d), raw %d, ratio %g; want consistent totals", got.StoredBytes, stored, got.RawBytes, got.Ratio)
	}
	var out bytes.Buffer
	if err := inspectMain([]string{r.ckpt}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"checkpoint at step 3, verified", "weights.st.zst", "lm_head.weight", "m.lm_head.weight", "compression ratio"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out.String())
		}
	}
}

// testInspectCorrupt: a flipped bit is reported, with the file, in the output and as a non-nil error.
func testInspectCorrupt(t *testing.T, r run) {
	bad := corruptCopy(t, r.ckpt)
	got, err := inspectJSONOf(t, bad)
	if !errors.Is(err, checkpoints.ErrCorrupt) || got.Verified || !strings.Contains(got.Error, "weights.st.zst") {
		t.Errorf("inspect of a corrupt checkpoint: verified %v, error %q, err %v; want ErrCorrupt naming weights.st.zst", got.Verified, got.Error, err)
	}
	var out bytes.Buffer
	if err := inspectMain([]string{bad}, &out); err == nil || !strings.Contains(out.String(), "CORRUPT") {
		t.Errorf("inspect (text) of a corrupt checkpoint: err %v, output %q; want an error and CORRUPT", err, out.String())
	}
}

// testInspectSwappedShape: a checkpoint whose checksums verify but whose lm_head.weight is stored with
// its dimensions swapped is not verified: inspect names the tensor and both shapes.
func testInspectSwappedShape(t *testing.T, r run) {
	dir := filepath.Join(t.TempDir(), "out")
	ck, err := checkpoints.Load(r.ckpt)
	if err != nil {
		t.Fatal(err)
	}
	w := ck.Weights["lm_head.weight"]
	w.Shape = []int{w.Shape[1], w.Shape[0]}
	ck.Weights["lm_head.weight"] = w
	path, err := checkpoints.Save(dir, ck)
	if err != nil {
		t.Fatal(err)
	}
	got, err := inspectJSONOf(t, path)
	if !errors.Is(err, checkpoints.ErrConfigMismatch) || got.Verified || !strings.Contains(got.Error, `"lm_head.weight": shape`) {
		t.Errorf("inspect of a swapped shape: verified %v, error %q, err %v; want ErrConfigMismatch naming lm_head.weight", got.Verified, got.Error, err)
	}
}

// testInspectExport: an export folder is described file by file; a truncated file fails.
func testInspectExport(t *testing.T, r run) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := exportMain([]string{"--checkpoint", r.ckpt, "--out", dir}, &out); err != nil {
		t.Fatal(err)
	}
	got, err := inspectJSONOf(t, dir)
	if err != nil || !got.Verified || got.Step != -1 || len(got.Files) != 1 || got.Files[0].Name != "model.safetensors" {
		t.Errorf("inspect of an export: %+v, %v; want one verified model.safetensors, no step", got.Files, err)
	}
	path := filepath.Join(dir, "model.safetensors")
	b := readFile(t, path)
	if err := os.WriteFile(path, b[:len(b)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := inspectJSONOf(t, path); !errors.Is(err, checkpoints.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("inspect of a truncated export: err = %v; want ErrCorrupt naming %s", err, path)
	}
}

func TestInspectErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	tests := []struct {
		name string
		args []string
		want error  // nil: any error
		text string // in the message
	}{
		{"missing path", []string{missing}, checkpoints.ErrNotFound, missing},
		{"no path", nil, nil, "PATH"},
		{"two paths", []string{missing, missing}, nil, "PATH"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := inspectMain(tt.args, &out)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: err = %v; want an error mentioning %q", tt.name, err, tt.text)
		}
	}
}
