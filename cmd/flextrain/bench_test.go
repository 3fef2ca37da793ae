package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
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

// TestDeviceFlag: --device reaches the config of bench and fit (this build has no CUDA, and says so, naming
// the device, before any weight is made: bench-7b.yaml's would take 28 GB), and a device that is no device
// is refused as a config value.
func TestDeviceFlag(t *testing.T) {
	var out bytes.Buffer
	for _, tc := range []struct{ config, device, want string }{
		{"tiny.yaml", "cuda:1", "device cuda:1: gpu: this flextrain has no CUDA"},
		{"bench-7b.yaml", "cuda", "device cuda:0: gpu: this flextrain has no CUDA"},
		{"tiny.yaml", "tpu", `device: "tpu" is not cpu, cuda or cuda:N`},
	} {
		err := benchMain([]string{"--config", "../../configs/" + tc.config, "--device", tc.device, "--steps", "1"}, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bench --device %s: %v; want an error with %q", tc.device, err, tc.want)
		}
	}
	dir := t.TempDir()
	cmd := fitCmd(t, context.Background(), dir)
	cmd.Args = append(cmd.Args, "--device", "cuda")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "device cuda:0: gpu: this flextrain has no CUDA") {
		t.Errorf("fit --device cuda: %v\n%s", err, b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused fit left %d entries in output_dir", len(entries))
	}
}
