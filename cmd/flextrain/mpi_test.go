//go:build mpi

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flextrain/flextrain/checkpoints"
)

// These tests run `mpirun -np 2 flextrain fit` on configs/tiny.yaml, on loopback, as a cluster user would:
// the binary built with -tags mpi (this test binary's own build tag). CI runs them.

// mpirun returns the launcher's path, skipping the test without one.
func mpirun(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("no mpirun: install openmpi-bin")
	}
	return p
}

// mpiFit is `mpirun -np n flextrain fit --config configs/tiny.yaml --set output_dir=dir --set …`, run from
// the repository root; mpirun runs as root on CI, and on 2 cores needs --oversubscribe.
func mpiFit(t *testing.T, ctx context.Context, n int, dir string, sets ...string) *exec.Cmd {
	args := []string{"--allow-run-as-root", "--oversubscribe", "-np", strconv.Itoa(n), flextrainBin(t),
		"fit", "--config", "configs/tiny.yaml", "--set", "output_dir=" + dir}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, mpirun(t), args...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "OMPI_MCA_btl=self,tcp", "OMPI_MCA_btl_tcp_if_include=lo", "OMPI_MCA_oob_tcp_if_include=lo")
	return cmd
}

// mpiRun runs mpiFit to its end and fails the test unless it exits 0.
func mpiRun(t *testing.T, n int, dir string, sets ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := mpiFit(t, ctx, n, dir, sets...).CombinedOutput()
	if err != nil {
		t.Fatalf("mpirun -np %d flextrain fit %v: %v\n%s", n, sets, err, out)
	}
	return string(out)
}

// TestMPITwoRanksMatchOne: 2 ranks of per-device batch 2 and 1 rank of batch 4 take the same global batches,
// so over 20 steps the logged losses agree to 1e-5 (relative) and the final weights to float32 rounding.
func TestMPITwoRanksMatchOne(t *testing.T) {
	one, two := t.TempDir(), t.TempDir()
	sets := []string{"max_steps=20", "eval_steps=0", "logging_steps=1"}
	mpiRun(t, 1, one, append(sets, "per_device_train_batch_size=4")...)
	mpiRun(t, 2, two, append(sets, "per_device_train_batch_size=2")...)
	a, b := stepLosses(t, one), stepLosses(t, two)
	for s := 1; s <= 20; s++ {
		x, _ := a[s]["loss"].(float64)
		y, _ := b[s]["loss"].(float64)
		if x == 0 || math.Abs(x-y) > 1e-5*math.Abs(x) {
			t.Errorf("step %d: loss %v on 2 ranks, %v on 1", s, y, x)
		}
	}
	ca, err1 := checkpoints.Load(filepath.Join(one, "checkpoint-20"))
	cb, err2 := checkpoints.Load(filepath.Join(two, "checkpoint-20"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	worst := 0.0
	for name, w := range ca.Weights {
		x, _ := w.Float32s()
		y, _ := cb.Weights[name].Float32s()
		for i := range x {
			d := math.Abs(float64(x[i] - y[i]))
			worst = max(worst, d)
			if d > 1e-5+1e-4*math.Abs(float64(x[i])) {
				t.Fatalf("%s[%d] = %v on 2 ranks, %v on 1", name, i, y[i], x[i])
			}
		}
	}
	t.Logf("largest weight difference after 20 steps: %.3g", worst)
}

// TestMPISignalResume: SIGTERM to every rank after the third step line, as a scheduler (SLURM's scancel,
// a time limit) sends it to every task of a job: the ranks finish the step, rank 0 saves it, and each
// exits 143, which mpirun reports as the job's status. Resumed on 2 ranks to 4 more steps, the run logs the
// losses and ends with the weights of an uninterrupted 2-rank run, bit for bit.
func TestMPISignalResume(t *testing.T) {
	dir, straight := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := mpiFit(t, ctx, 2, dir, append(signalSets, "max_steps=1000000", "per_device_train_batch_size=2")...)
	last, code, stderr := signalAfter(t, cmd, 3, syscall.SIGTERM)
	if code != 143 || strings.Count(stderr, "stopped by terminated") != 2 {
		t.Fatalf("after SIGTERM to the ranks: mpirun exit status %d; want 143 with both ranks stopped by the signal\n%s", code, stderr)
	}
	if e, err := checkpoints.Latest(dir); err != nil || e.Step != last {
		t.Fatalf("after SIGTERM: Latest = %+v, %v; want the last logged step %d", e, err, last)
	}
	end := fmt.Sprint("max_steps=", last+4)
	if out := mpiRun(t, 2, dir, append(signalSets, end, "per_device_train_batch_size=2")...); !strings.Contains(out, "resumed") {
		t.Errorf("the second run did not resume:\n%s", out)
	}
	mpiRun(t, 2, straight, append(signalSets, end, "per_device_train_batch_size=2")...)
	compareRuns(t, straight, dir, last+4)
}

// ranks returns the process ids of mpirun's children: the ranks on this machine.
func ranks(t *testing.T, mpirun *os.Process) []int {
	t.Helper()
	out, err := exec.Command("pgrep", "-P", strconv.Itoa(mpirun.Pid)).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	if err != nil || len(pids) == 0 {
		t.Fatalf("no rank process under mpirun %d: %v", mpirun.Pid, err)
	}
	return pids
}

// TestMPIRefusesOtherWorldSize: a checkpoint of 2 ranks is not resumed on 1 without --reshard.
func TestMPIRefusesOtherWorldSize(t *testing.T) {
	dir := t.TempDir()
	mpiRun(t, 2, dir, "max_steps=2", "eval_steps=0", "per_device_train_batch_size=2")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := mpiFit(t, ctx, 1, dir, "max_steps=3", "eval_steps=0", "per_device_train_batch_size=2").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--reshard") {
		t.Fatalf("resume on 1 rank: %v\n%s\nwant a refusal naming --reshard", err, out)
	}
}

// TestMPIRankKilled: one rank killed with SIGKILL mid-run ends the job with a non-zero status within 60 s,
// and the newest checkpoint still verifies.
func TestMPIRankKilled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := mpiFit(t, ctx, 2, dir, append(signalSets, "max_steps=1000000", "save_steps=1", "per_device_train_batch_size=2")...)
	sc, errBuf := startLogged(t, cmd)
	for sc.Scan() {
		if step, ok := stepOfLine(sc.Text()); ok && step >= 2 {
			break
		}
	}
	pids := ranks(t, cmd.Process)
	victim := pids[len(pids)-1]
	syscall.Kill(victim, syscall.SIGKILL)
	killed := time.Now()
	go func() { // drain so that a rank blocked on a full pipe cannot hold the job up
		for sc.Scan() {
		}
	}()
	err := cmd.Wait()
	if waited := time.Since(killed); err == nil || waited > 60*time.Second {
		t.Fatalf("after killing rank process %d: mpirun ended with %v after %v; want a non-zero status within 60 s\n%s", victim, err, waited, errBuf.String())
	}
	e, err := checkpoints.Latest(dir)
	if err != nil {
		t.Fatalf("newest checkpoint after the kill: %v", err)
	}
	if _, err := checkpoints.Load(e.Path); err != nil {
		t.Errorf("%s does not verify: %v", e.Path, err)
	}
}

// signalAfter starts mpirun's cmd, sends sig to every rank after the line of step after, and returns the
// last step logged, mpirun's exit status and the standard error.
func signalAfter(t *testing.T, cmd *exec.Cmd, after int, sig syscall.Signal) (last, code int, stderr string) {
	t.Helper()
	sc, errBuf := startLogged(t, cmd)
	sent := false
	for sc.Scan() {
		if step, ok := stepOfLine(sc.Text()); ok {
			last = step
			if !sent && step >= after {
				for _, pid := range ranks(t, cmd.Process) {
					syscall.Kill(pid, sig)
				}
				sent = true
			}
		}
	}
	cmd.Wait()
	return last, cmd.ProcessState.ExitCode(), errBuf.String()
}
