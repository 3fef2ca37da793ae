package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// benchMain runs `flextrain bench` with args (those after the subcommand name), writing to w.
func benchMain(args []string, w *bytes.Buffer) error {
	app := &cli.App{Name: "flextrain", Writer: w, ErrWriter: w, Commands: []*cli.Command{benchCommand()}}
	return app.Run(append([]string{"flextrain", "bench"}, args...))
}

// TestBenchVersus: --versus reports both modes and the ratio of their medians, as text and as JSON.
func TestBenchVersus(t *testing.T) {
	args := []string{"--config", "../../configs/tiny.yaml", "--mode", "flex-union", "--versus", "lr", "--steps", "1",
		"--warmup", "0", "--strategy", "topk", "--ratio", "0.25"}
	var out bytes.Buffer
	if err := benchMain(args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"mode flex-union", "mode lr", "flex-union / lr: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := benchMain(append(args, "--json"), &out); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Modes []struct {
			Mode     string  `json:"mode"`
			MedianMS float64 `json:"median_ms"`
		} `json:"modes"`
		Ratio float64 `json:"median_ratio"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	if len(got.Modes) != 2 || got.Modes[0].Mode != "flex-union" || got.Modes[1].Mode != "lr" ||
		got.Ratio != got.Modes[0].MedianMS/got.Modes[1].MedianMS {
		t.Errorf("JSON %+v: want flex-union and lr and the ratio of their medians", got)
	}
	if err := benchMain([]string{"--config", "../../configs/tiny.yaml", "--versus", "sparse", "--steps", "1"}, &out); err == nil ||
		!strings.Contains(err.Error(), "sparse") {
		t.Errorf("unknown --versus mode: error %v; want one naming it", err)
	}
}
