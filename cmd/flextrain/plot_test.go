package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testPlotRun: `plot DIR --out FILE` (the flag after the argument) draws the run's three steps and its evaluation.
func testPlotRun(t *testing.T, r run) {
	path := filepath.Join(t.TempDir(), "curves.png")
	var out bytes.Buffer
	if err := plotMain([]string{r.metrics, "--out", path}, &out); err != nil {
		t.Fatalf("plot: %v", err)
	}
	if want := "wrote " + path + ": 3 train loss, 1 eval loss, 1 eval accuracy points\n"; out.String() != want {
		t.Errorf("plot printed %q; want %q", out.String(), want)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("%s: %v", path, err)
	}
	// Two runs on shared axes: the run twice, 3 losses and 1 accuracy each.
	out.Reset()
	if err := plotMain([]string{r.metrics, r.metrics, "--out", path}, &out); err != nil {
		t.Fatalf("plot of two runs: %v", err)
	}
	if want := "wrote " + path + ": 2 runs, 8 points\n"; out.String() != want {
		t.Errorf("plot of two runs printed %q; want %q", out.String(), want)
	}
}

func TestPlotErrors(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		text string // in the message
	}{
		{"no directory", nil, "OUTPUT_DIR"},
		{"two directories without --out", []string{empty, empty}, "--out is required with 2 runs"},
		{"two directories without metrics", []string{empty, empty, "--out", filepath.Join(empty, "x.png")}, filepath.Join(empty, "metrics.jsonl")},
		{"no metrics", []string{empty}, filepath.Join(empty, "metrics.jsonl")},
		{"unknown trailing flag", []string{empty, "--outt", "x.png"}, "--outt"},
		{"flag without value", []string{empty, "--out"}, "--out needs a value"},
		{"unknown subset", []string{empty, "--subset", "tiny"}, `unknown question subset "tiny"`},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		if err := plotMain(tt.args, &out); err == nil || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: err = %v; want an error mentioning %q", tt.name, err, tt.text)
		}
	}
}
