package train

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/ from this build")

// goldenLossesFile holds the losses of the first optimizer steps of configs/tiny.yaml.
const goldenLossesFile = "testdata/tiny_losses.json"

// goldenTolerance is the relative difference allowed between a loss and its golden value: float32
// training on another CPU (with or without AVX-512, whose kernels sum in another order) drifts by a few
// units of 1e-7 a step; a changed model, optimizer or data order moves the losses by far more.
const goldenTolerance = 1e-5

// TestTinyGoldenLosses is the golden loss list of docs/RELIABILITY.md §17: the first 10 losses of
// configs/tiny.yaml (its whole schedule, stopped after step 10) equal testdata/tiny_losses.json to
// goldenTolerance. After an intended change of the numbers, regenerate the file with
// `go test ./train -run TestTinyGoldenLosses -update`.
func TestTinyGoldenLosses(t *testing.T) {
	const n = 10
	cfg := tinyConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var losses []float64
	record := func(step int, loss float64) float64 {
		if losses = append(losses, loss); step == n {
			cancel()
		}
		return loss
	}
	if _, _, err := runTiny(t, ctx, cfg, RunOptions{Fault: record}); !errors.Is(err, ErrInterrupted) || len(losses) != n {
		t.Fatalf("Run: %v after %d steps; want ErrInterrupted after %d", err, len(losses), n)
	}
	if *update {
		b, _ := json.MarshalIndent(losses, "", "  ")
		if err := os.WriteFile(goldenLossesFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	var want []float64
	b, err := os.ReadFile(goldenLossesFile)
	if err == nil {
		err = json.Unmarshal(b, &want)
	}
	if err != nil || len(want) != n {
		t.Fatalf("%s: %d losses, %v; want %d (regenerate it with -update)", goldenLossesFile, len(want), err, n)
	}
	for i := range want {
		if d := math.Abs(losses[i]-want[i]) / math.Abs(want[i]); !(d <= goldenTolerance) {
			t.Errorf("step %d: loss %.9g; golden %.9g (relative difference %.2g > %g)", i+1, losses[i], want[i], d, goldenTolerance)
		}
	}
}
