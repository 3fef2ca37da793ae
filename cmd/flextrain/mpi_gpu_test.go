//go:build mpi && gpu

package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestMPIOnGPUs: `mpirun -np 2 flextrain fit --device cuda`, each rank on the GPU of its local rank, sums the
// gradients among the GPUs (NCCL; the log says so) and follows 1 rank of twice the batch on the CPU, as
// TestMPITwoRanksMatchOne's ranks do (losses within 10⁻⁵). A machine of one GPU skips it; on the CUDA
// emulator, FLEXTRAIN_EMU_DEVICES gives each rank a second one (a GPU machine ignores the variable).
func TestMPIOnGPUs(t *testing.T) {
	t.Setenv("FLEXTRAIN_EMU_DEVICES", "2")
	requireGPUs(t, 2)
	one, two := t.TempDir(), t.TempDir()
	sets := []string{"max_steps=4", "eval_steps=0", "logging_steps=1", "save_steps=4"}
	mpiRun(t, 1, one, append(sets, "per_device_train_batch_size=4", "device=cpu")...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := mpiFit(t, ctx, 2, two, append(sets, "per_device_train_batch_size=2", "device=cuda")...).CombinedOutput()
	if err != nil {
		t.Fatalf("mpirun -np 2 flextrain fit --device cuda: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "gradient sums stay on the GPUs: a group of 2") {
		t.Errorf("the ranks did not sum on their GPUs:\n%s", out)
	}
	closeSteps(t, stepLosses(t, one), stepLosses(t, two), 1, 4)
}
