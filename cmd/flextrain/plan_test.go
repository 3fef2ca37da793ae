package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
)

// TestPlanCommand: `plan` prints each part and the total of the configuration's memory, as a table or as
// JSON whose total adds its parts.
func TestPlanCommand(t *testing.T) {
	var out bytes.Buffer
	if err := planMain([]string{"--config", "../../configs/tiny.yaml"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"frozen weights", "trainable weights", "gradients", "AdamW m and v", "activations", "total"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := planMain([]string{"--config", "../../configs/tiny.yaml", "--rows", "40", "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var p config.Plan
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, part := range p.Parts {
		sum += part.Bytes
	}
	if sum != p.Total || p.Total == 0 {
		t.Errorf("JSON plan: parts add to %d, total %d", sum, p.Total)
	}
	out.Reset()
	if err := planMain([]string{"--config", "../../configs/tiny.yaml", "--device", "cuda", "--rows", "40"}, &out); err != nil ||
		!strings.Contains(out.String(), "gradients") || strings.Contains(out.String(), "feature cache") {
		t.Errorf("plan --device cuda: %v; want the GPU's plan:\n%s", err, out.String())
	}
}

// TestPlanModel: `plan --model DIR` prints predict's memory on a published folder; --config and --model are
// one or the other.
func TestPlanModel(t *testing.T) {
	var out bytes.Buffer
	dir := "../../testdata/llava/llava-v1.5-tiny"
	if err := planMain([]string{"--model", dir, "--max-new-tokens", "8"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"weights (16-bit ones mapped)", "key and value cache", "vision tower on 1 image(s)", "total"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("plan --model output lacks %q:\n%s", want, out.String())
		}
	}
	for _, args := range [][]string{{}, {"--model", dir, "--config", "../../configs/tiny.yaml"}} {
		if err := planMain(args, &out); err == nil || !strings.Contains(err.Error(), "--config FILE") {
			t.Errorf("plan %v: err = %v; want one naming --config and --model", args, err)
		}
	}
}
