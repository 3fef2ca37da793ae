package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
)

// TestFlopsLLaVA7B checks the numbers of docs/DESIGN.md §14 through the CLI and the shipped 7B
// configuration: 64 text tokens, 10% selected: LR-only 9.08 ± 0.05 TFLOPs, paper-like FlexAttention
// 17.1 ± 0.2.
func TestFlopsLLaVA7B(t *testing.T) {
	var out bytes.Buffer
	err := flopsMain([]string{"--config", "../../configs/llava-1.5-7b-flex.yaml", "--selected", "0.1", "--text-tokens", "64", "--json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		LROnly         struct{ Total float64 }   `json:"lr_only"`
		FlexPaper      struct{ Total float64 }   `json:"flex_paper"`
		FullHR         struct{ Decoder float64 } `json:"full_hr"`
		ReductionPaper float64                   `json:"reduction_paper"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json output %q: %v", out.String(), err)
	}
	if strings.Count(strings.TrimSpace(out.String()), "\n") != 0 {
		t.Errorf("--json printed %d lines; want one object", strings.Count(out.String(), "\n"))
	}
	if lr := got.LROnly.Total / 1e12; math.Abs(lr-9.08) > 0.05 {
		t.Errorf("LR-only = %.3f TFLOPs; want 9.08 ± 0.05", lr)
	}
	if fp := got.FlexPaper.Total / 1e12; math.Abs(fp-17.1) > 0.2 {
		t.Errorf("FlexAttention paper-like = %.3f TFLOPs; want 17.1 ± 0.2", fp)
	}
	if want := 1 - got.FlexPaper.Total/got.FullHR.Decoder; math.Abs(got.ReductionPaper-want) > 1e-12 {
		t.Errorf("reduction_paper = %g; want %g", got.ReductionPaper, want)
	}
}

func TestFlopsTable(t *testing.T) {
	var out bytes.Buffer
	if err := flopsMain([]string{"--config", "../../configs/bench.yaml", "--text-tokens", "96"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"64 image + 96 text = 160 tokens", "576 HR tokens", "GFLOPs", "LR only",
		"FlexAttention, inference-true", "FlexAttention, paper-like", "full HR sequence", "fewer FLOPs"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestFlopsSet: --set reaches the configuration, typed and nested, and a list value keeps its commas.
func TestFlopsSet(t *testing.T) {
	run := func(args ...string) float64 {
		var out bytes.Buffer
		args = append([]string{"--config", "../../configs/bench.yaml", "--json"}, args...)
		if err := flopsMain(args, &out); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		var got struct {
			LROnly struct{ Decoder float64 } `json:"lr_only"`
		}
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		return got.LROnly.Decoder
	}
	base := run()
	// Doubling the layers doubles the layer part; the lm_head part (2·N·D·V, N = 64 + 64) stays.
	head := 2.0 * 128 * 256 * 1024
	if got, want := run("--set", "model.text.num_layers=16", "--set", "trainable=lm_head.*,model.norm.*"), 2*(base-head)+head; math.Abs(got-want) > 1e-6*want {
		t.Errorf("16 layers: LR-only decoder = %g; want %g", got, want)
	}
}

func TestFlopsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want error  // nil: any error
		text string // in the message
	}{
		{"unknown --set key", []string{"--config", "../../configs/bench.yaml", "--set", "flex.thresold=40"}, config.ErrUnknownKey, "flex.thresold"},
		{"ill-typed --set", []string{"--config", "../../configs/bench.yaml", "--set", "seed=x"}, config.ErrBadValue, "seed"},
		{"selected above 1", []string{"--config", "../../configs/bench.yaml", "--selected", "2"}, nil, "selected"},
		{"missing file", []string{"--config", "nope.yaml"}, nil, "nope.yaml"},
		{"no --config", nil, nil, "config"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := flopsMain(tt.args, &out)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: err = %v; want an error mentioning %q", tt.name, err, tt.text)
		}
	}
}
