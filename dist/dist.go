// Package dist is the group of processes that train one model together, data parallel: each process is
// one rank of Size(), reads its shard of the data, and sums its gradients with the others' in place before
// every rank takes the same optimizer step. The engine is the one clusters already have: MPI, behind the
// `mpi` build tag (Open MPI through pkg-config ompi-c; add the `mpich` tag for MPICH). The default build
// has only Single, one process, so nothing changes without the tag. The binding is this package's own
// cgo over MPI's C API (mpi.go, one OS thread making every MPI call): no maintained Go binding of MPI
// exists, and a data-parallel trainer needs only a handful of calls. Tests of multi-rank logic in the
// default build use disttest.Local, ranks as goroutines of one process.
//
// Every collective must be called by every rank, in the same order: a rank that skips one leaves the
// others waiting. The trainer keeps them in step; a rank that dies is the launcher's to end (mpirun stops
// the whole job when one process fails).
package dist

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
)

// Comm is the group of ranks. Its methods are not safe for concurrent use: one goroutine drives a rank.
type Comm interface {
	// Rank is this process's rank, 0…Size()−1; rank 0 logs and writes checkpoints.
	Rank() int
	// Size is the number of ranks.
	Size() int
	// LocalRank is this process's rank among those on its machine (which GPU it takes).
	LocalRank() int
	// SumFloat32 replaces buf, on every rank, with the element-wise sum of every rank's buf.
	SumFloat32(buf []float32) error
	// SumFloat64 is SumFloat32 for float64 values.
	SumFloat64(buf []float64) error
	// Bcast replaces buf, on every rank, with root's buf; every rank passes a buffer of the same length.
	Bcast(buf []byte, root int) error
	// Barrier returns once every rank has called it.
	Barrier() error
	// Abort ends every rank of the job with code; it does not return.
	Abort(code int)
	// Close ends this rank's part in the group (MPI_Finalize).
	Close() error
}

// ErrNoMPI reports a process started by an MPI launcher in a build without MPI.
var ErrNoMPI = errors.New("dist: this build has no MPI: rebuild with `go build -tags mpi ./cmd/flextrain`")

// Single is the Comm of one process alone: rank 0 of 1, whose collectives leave their buffers as they are.
type Single struct{}

func (Single) Rank() int                  { return 0 }
func (Single) Size() int                  { return 1 }
func (Single) LocalRank() int             { return 0 }
func (Single) SumFloat32([]float32) error { return nil }
func (Single) SumFloat64([]float64) error { return nil }
func (Single) Bcast(buf []byte, root int) error {
	if root != 0 {
		return fmt.Errorf("dist: broadcast from rank %d of 1", root)
	}
	return nil
}
func (Single) Barrier() error { return nil }
func (Single) Abort(code int) { os.Exit(code) }
func (Single) Close() error   { return nil }

// Gather returns every rank's payload, in rank order, on every rank: each rank in turn broadcasts its
// length, then its bytes. For the small, rare exchanges of a run (data cursors at a checkpoint, error
// flags); gradients go through SumFloat32.
func Gather(c Comm, payload []byte) ([][]byte, error) {
	out := make([][]byte, c.Size())
	for r := range out {
		var n [8]byte
		if r == c.Rank() {
			binary.LittleEndian.PutUint64(n[:], uint64(len(payload)))
		}
		if err := c.Bcast(n[:], r); err != nil {
			return nil, err
		}
		size := binary.LittleEndian.Uint64(n[:])
		if size > 1<<30 {
			return nil, fmt.Errorf("dist: gather: rank %d sends %d bytes", r, size)
		}
		buf := make([]byte, size)
		if r == c.Rank() {
			copy(buf, payload)
		}
		if err := c.Bcast(buf, r); err != nil {
			return nil, err
		}
		out[r] = buf
	}
	return out, nil
}

// Any reports on every rank whether some rank passed true: how ranks agree to stop together (a signal
// reached one of them first, or its setup failed).
func Any(c Comm, mine bool) (bool, error) {
	v := []float64{0}
	if mine {
		v[0] = 1
	}
	if err := c.SumFloat64(v); err != nil {
		return false, err
	}
	return v[0] > 0 && !math.IsNaN(v[0]), nil
}
