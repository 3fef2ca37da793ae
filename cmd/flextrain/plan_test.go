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
}
