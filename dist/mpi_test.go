//go:build mpi

// Tests of the MPI transport. TestMPI, run as one process by `go test -tags mpi ./dist/`, starts this test
// binary again as the ranks of a world (under mpirun, and alone as a world of 1); in each rank TestRank
// runs the collectives and prints a verdict line that TestMPI checks for every rank.

package dist

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rankEnv, in a process that TestMPI started as a rank, holds the size of its world.
const rankEnv = "FLEXTRAIN_DIST_TEST_WORLD"

// launchTimeout turns a world that hangs (a rank missing from a collective) into a failure; each rank's
// own -test.timeout, shorter, ends it first with every goroutine's stack. Both are generous: on a machine
// whose cores are busy, a rank can wait minutes for its peers to start (MPI_Init waits for them all).
const launchTimeout = 5 * time.Minute

// verdict is the line each rank prints when every rank test passed on it.
var verdict = regexp.MustCompile(`(?m)dist-test rank (\d+) of (\d+): ok$`)

// TestMPI runs TestRank in worlds of 2, 3 and 1 processes under mpirun, and in one process started
// without a launcher, and requires every rank's verdict and a clean exit.
func TestMPI(t *testing.T) {
	if os.Getenv(rankEnv) != "" {
		t.Skip("a rank runs TestRank")
	}
	if _, err := launcher(1); err != nil {
		t.Skip(err) // Open MPI's lone process also needs the launcher's tools (orted) on PATH
	}
	for _, tc := range []struct {
		name string
		np   int
		mpi  bool
	}{
		{"launcher-np2", 2, true},
		{"launcher-np3", 3, true}, // more ranks than this CI's cores; broadcasts down a tree
		{"launcher-np1", 1, true},
		{"alone", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{os.Args[0], "-test.run=^TestRank$", "-test.v", "-test.timeout=4m"}
			if tc.mpi {
				l, _ := launcher(tc.np)
				args = append(l, args...)
			}
			out, err := launch(args, tc.np)
			t.Logf("%s\n%s", strings.Join(args, " "), out)
			if err != nil {
				t.Fatalf("world of %d: %v", tc.np, err)
			}
			checkVerdicts(t, out, tc.np)
		})
	}
}

// launcher is the command line that starts np ranks of this build's MPI on this machine: Open MPI's
// mpirun, as root too and with more ranks than cores, each line of output tagged with its rank; or MPICH's
// mpiexec (Hydra).
func launcher(np int) ([]string, error) {
	n := strconv.Itoa(np)
	if library == "MPICH" {
		for _, name := range []string{"mpiexec.mpich", "mpiexec"} {
			if p, err := exec.LookPath(name); err == nil {
				return []string{p, "-prepend-rank", "-n", n}, nil
			}
		}
		return nil, errors.New("MPICH's mpiexec is not installed (Debian: apt-get install mpich)")
	}
	p, err := exec.LookPath("mpirun")
	if err != nil {
		return nil, errors.New("mpirun is not installed (Debian: apt-get install openmpi-bin)")
	}
	return []string{p, "--allow-run-as-root", "--oversubscribe", "--tag-output", "-np", n}, nil
}

// launch runs args with rankEnv set to np and returns their output, ending them after launchTimeout.
func launch(args []string, np int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), launchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) } // mpirun ends its ranks
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", rankEnv, np))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("still running after %v: %v", launchTimeout, err)
	}
	return out.String(), err
}

// checkVerdicts requires one verdict from each rank 0…np−1 of a world of np.
func checkVerdicts(t *testing.T, out string, np int) {
	t.Helper()
	seen := make([]int, np)
	for _, m := range verdict.FindAllStringSubmatch(out, -1) {
		r, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		if n != np || r < 0 || r >= np {
			t.Errorf("verdict of rank %d of %d in a world of %d", r, n, np)
			continue
		}
		seen[r]++
	}
	for r, k := range seen {
		if k != 1 {
			t.Errorf("rank %d of %d: %d verdicts, want 1", r, np, k)
		}
	}
}

// TestRank is one rank's part of TestMPI: every collective of the Comm, in the same order on every rank.
// Wrong values are errors (the ranks stay in step); a collective that fails ends the test.
func TestRank(t *testing.T) {
	want, _ := strconv.Atoi(os.Getenv(rankEnv))
	if want == 0 {
		t.Skip("run by TestMPI as a rank of a world")
	}
	c, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() != want {
		t.Fatalf("Size() = %d, want %d", c.Size(), want)
	}
	for _, tc := range []struct {
		name string
		f    func(*testing.T, Comm)
	}{
		{"identity", testIdentity},
		{"sum_float32", testSumFloat32},
		{"sum_float64", testSumFloat64},
		{"sum_chunks", testSumChunks},
		{"sum_empty", testSumEmpty},
		{"bcast", testBcast},
		{"bcast_chunks", testBcastChunks},
		{"bcast_bad_root", testBcastBadRoot},
		{"gather", testGather},
		{"any", testAny},
		{"barrier", testBarrier},
		{"go_panics", testGoPanics},
		{"mpi_error", testMPIError},
		{"close", testClose},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, c) })
	}
	if !t.Failed() {
		fmt.Printf("dist-test rank %d of %d: ok\n", c.Rank(), c.Size())
	}
}

// testIdentity: the ranks are 0…Size−1, all on this machine, so the local rank is the rank; Open again
// returns the same Comm.
func testIdentity(t *testing.T, c Comm) {
	if r := c.Rank(); r < 0 || r >= c.Size() {
		t.Errorf("Rank() = %d of %d", r, c.Size())
	}
	if c.LocalRank() != c.Rank() {
		t.Errorf("LocalRank() = %d, want %d (one machine)", c.LocalRank(), c.Rank())
	}
	again, err := Open()
	if err != nil || again != c {
		t.Errorf("Open again = %v, %v; want the same Comm", again, err)
	}
}

// value is rank r's i-th summand: small integers, so every sum is exact whatever MPI's order.
func value(r, i int) float64 { return float64((r+1)*(i%7+1) - 3) }

// wantSum is the sum of value(r, i) over the ranks of a world of n.
func wantSum(n, i int) float64 {
	s := 0.0
	for r := range n {
		s += value(r, i)
	}
	return s
}

func testSumFloat32(t *testing.T, c Comm) { sumFloat32(t, c, 1000) }

// sumFloat32 sums n float32 values over the world and checks each.
func sumFloat32(t *testing.T, c Comm, n int) {
	buf := make([]float32, n)
	for i := range buf {
		buf[i] = float32(value(c.Rank(), i))
	}
	if err := c.SumFloat32(buf); err != nil {
		t.Fatal(err)
	}
	for i, v := range buf {
		if float64(v) != wantSum(c.Size(), i) {
			t.Fatalf("element %d = %v, want %v", i, v, wantSum(c.Size(), i))
		}
	}
}

func testSumFloat64(t *testing.T, c Comm) {
	buf := make([]float64, 1000)
	for i := range buf {
		buf[i] = value(c.Rank(), i)
	}
	if err := c.SumFloat64(buf); err != nil {
		t.Fatal(err)
	}
	for i, v := range buf {
		if v != wantSum(c.Size(), i) {
			t.Fatalf("element %d = %v, want %v", i, v, wantSum(c.Size(), i))
		}
	}
}

// withChunk lowers chunkLen to n, on every rank alike, for the rest of the test.
func withChunk(t *testing.T, n int) {
	old := chunkLen
	chunkLen = n
	t.Cleanup(func() { chunkLen = old })
}

// testSumChunks: a buffer of several chunks, the last one short, each above shared memory's eager limit.
func testSumChunks(t *testing.T, c Comm) {
	withChunk(t, 1<<16)
	sumFloat32(t, c, 3<<16+5)
}

func testSumEmpty(t *testing.T, c Comm) {
	if err := c.SumFloat32(nil); err != nil {
		t.Error(err)
	}
	if err := c.SumFloat64([]float64{}); err != nil {
		t.Error(err)
	}
}

// pattern is rank r's bytes for a broadcast of n.
func pattern(r, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r*31 + i)
	}
	return b
}

// bcastEach broadcasts n bytes from every root in turn.
func bcastEach(t *testing.T, c Comm, n int) {
	for root := range c.Size() {
		buf := pattern(c.Rank(), n)
		if err := c.Bcast(buf, root); err != nil {
			t.Fatalf("from %d: %v", root, err)
		}
		if !bytes.Equal(buf, pattern(root, n)) {
			t.Errorf("from %d: rank %d holds another rank's bytes", root, c.Rank())
		}
	}
}

func testBcast(t *testing.T, c Comm) { bcastEach(t, c, 100) }

func testBcastChunks(t *testing.T, c Comm) {
	withChunk(t, 1<<16)
	bcastEach(t, c, 3<<16+5)
}

// testBcastBadRoot: a root outside the world is an error on every rank, before any MPI call.
func testBcastBadRoot(t *testing.T, c Comm) {
	for _, root := range []int{-1, c.Size()} {
		err := c.Bcast(make([]byte, 4), root)
		if err == nil || !strings.HasPrefix(err.Error(), "dist: bcast: ") {
			t.Errorf("Bcast from %d: %v, want an error", root, err)
		}
	}
}

// testGather: rank r sends r copies of its name (rank 0 sends nothing).
func testGather(t *testing.T, c Comm) {
	payload := func(r int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("r%d;", r)), r) }
	got, err := Gather(c, payload(c.Rank()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != c.Size() {
		t.Fatalf("%d payloads, want %d", len(got), c.Size())
	}
	for r, p := range got {
		if !bytes.Equal(p, payload(r)) {
			t.Errorf("payload %d = %q, want %q", r, p, payload(r))
		}
	}
}

// anyCase is a flag for each rank and the answer Any must give.
type anyCase struct {
	name string
	mine func(r int) bool
	want bool
}

// testAny: no rank, each rank alone, and every rank.
func testAny(t *testing.T, c Comm) {
	cases := []anyCase{
		{"none", func(int) bool { return false }, false},
		{"all", func(int) bool { return true }, true},
	}
	for k := range c.Size() {
		cases = append(cases, anyCase{fmt.Sprintf("only %d", k), func(r int) bool { return r == k }, true})
	}
	for _, tc := range cases {
		got, err := Any(c, tc.mine(c.Rank()))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: Any = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testBarrier(t *testing.T, c Comm) {
	for range 3 {
		if err := c.Barrier(); err != nil {
			t.Fatal(err)
		}
	}
}

// testGoPanics: after MPI_Init, a nil dereference is still a Go panic that recover catches (MPI has not
// taken SIGSEGV from the Go runtime).
func testGoPanics(t *testing.T, c Comm) {
	var p *[4]float32
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	sink = p[1]
}

// sink keeps testGoPanics's load.
var sink float32

// testMPIError: an MPI error comes back as a Go error with MPI's message (MPI_ERRORS_RETURN) instead of
// ending the job: rank 1 receives a broadcast into a buffer shorter than root 0's (truncation; 8 bytes go
// eagerly, so root 0 does not wait for rank 1). Only in a world of 2: with more, a rank that failed does
// not forward the broadcast down MPI's tree, and the ranks below it would wait forever.
func testMPIError(t *testing.T, c Comm) {
	if c.Size() != 2 {
		t.Skip("in a world of 2 only")
	}
	buf := make([]byte, 8-4*min(c.Rank(), 1))
	err := c.Bcast(buf, 0)
	t.Logf("rank %d: %v", c.Rank(), err)
	if c.Rank() == 1 && (err == nil || !strings.HasPrefix(err.Error(), "dist: bcast: ")) {
		t.Errorf("Bcast into a short buffer: %v, want a bcast error", err)
	}
}

// testClose: Close is MPI_Finalize, a second Close is nil, and afterwards collectives and Open fail.
func testClose(t *testing.T, c Comm) {
	if err := c.Barrier(); err != nil { // every rank is done with the collectives
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.SumFloat64([]float64{1}); err == nil || !strings.HasPrefix(err.Error(), "dist: allreduce: ") {
		t.Errorf("SumFloat64 after Close: %v, want an allreduce error", err)
	}
	if _, err := Open(); err == nil {
		t.Error("Open after Close: no error")
	}
}
