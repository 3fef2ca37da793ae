//go:build mpi

// The MPI transport: a small cgo layer over MPI's C API (about 230 lines with its C helpers), written
// here because no maintained Go binding of MPI exists and the trainer needs only a dozen MPI functions:
// init and finalize, rank and size, allreduce, broadcast, barrier, abort, the error handler and its
// strings, and the shared-memory split that gives the local rank. The C helpers below name MPI_COMM_WORLD
// and the datatypes, whose definitions differ between Open MPI and MPICH; mpi_openmpi.go and
// mpi_mpich.go choose the library through pkg-config.
//
// MPI is initialized MPI_THREAD_FUNNELED: one goroutine, locked to its OS thread, makes every MPI call of
// the process, and the Comm methods hand it their work over a channel. Errors return (MPI_ERRORS_RETURN)
// as Go errors carrying MPI_Error_string, instead of ending the process.

package dist

/*
#include <mpi.h>

static int fx_init(int *provided) {
	return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, provided);
}
static int fx_errors_return(void) {
	return MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}
static int fx_rank(int *r) { return MPI_Comm_rank(MPI_COMM_WORLD, r); }
static int fx_size(int *n) { return MPI_Comm_size(MPI_COMM_WORLD, n); }
static int fx_local_rank(int *r) {
	MPI_Comm node;
	int rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
	if (rc != MPI_SUCCESS) return rc;
	rc = MPI_Comm_rank(node, r);
	int rc2 = MPI_Comm_free(&node);
	return rc != MPI_SUCCESS ? rc : rc2;
}
static int fx_sum_float(float *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int fx_sum_double(double *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
static int fx_bcast(void *buf, int n, int root) {
	return MPI_Bcast(buf, n, MPI_BYTE, root, MPI_COMM_WORLD);
}
static int fx_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }
static int fx_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }
static int fx_finalize(void) { return MPI_Finalize(); }

// fx_error_string is MPI_Error_string into a static buffer: only the MPI thread calls it.
static const char *fx_error_string(int code) {
	static char s[MPI_MAX_ERROR_STRING + 1];
	int n = 0;
	if (MPI_Error_string(code, s, &n) != MPI_SUCCESS) n = 0;
	s[n] = 0;
	return s;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// chunkLen is the most elements one MPI call carries: MPI counts are C ints, so longer buffers go in
// several calls. A variable so that the tests can cross a chunk's edge with a small buffer.
var chunkLen = 1 << 30

// abortWait is how long Abort waits for the MPI thread, busy with another call, before it exits alone.
const abortWait = 30 * time.Second

// job is one piece of work for the MPI thread; last ends the thread after it (MPI_Finalize).
type job struct {
	run  func() error
	done chan error
	last bool
}

// mpiComm is the Comm of an MPI process: COMM_WORLD, driven through one OS thread.
type mpiComm struct {
	rank, size, local int
	jobs              chan job
	gone              chan struct{} // closed once MPI is finalized and the thread has ended
}

// world is this process's COMM_WORLD: MPI starts at most once per process.
var world struct {
	once sync.Once
	c    *mpiComm
	err  error
}

// Open returns the group this process belongs to: MPI's COMM_WORLD, initialized on the first call (a
// process started without a launcher is a world of 1). Later calls return the same Comm; once it is
// closed, MPI cannot start again in this process and Open fails.
func Open() (Comm, error) {
	world.once.Do(func() { world.c, world.err = open() })
	if world.err != nil {
		return nil, world.err
	}
	select {
	case <-world.c.gone:
		return nil, errors.New("dist: open: MPI is finalized and cannot start again in this process")
	default:
	}
	return world.c, nil
}

// open starts the MPI thread and initializes MPI on it.
func open() (*mpiComm, error) {
	c := &mpiComm{jobs: make(chan job), gone: make(chan struct{})}
	go c.serve()
	initialized := false
	err := c.do(func() error {
		var provided C.int
		if rc := C.fx_init(&provided); rc != C.MPI_SUCCESS {
			return mpiError("init", rc)
		}
		initialized = true
		if provided < C.MPI_THREAD_FUNNELED {
			return fmt.Errorf("dist: init: %s provides thread level %d, below MPI_THREAD_FUNNELED", library, provided)
		}
		if rc := C.fx_errors_return(); rc != C.MPI_SUCCESS {
			return mpiError("set error handler", rc)
		}
		return c.identify()
	}, false)
	if err != nil {
		c.do(func() error { // end the thread, and MPI if it started
			if initialized {
				C.fx_finalize()
			}
			return nil
		}, true)
		return nil, err
	}
	return c, nil
}

// identify reads this process's rank, the world's size and the rank on this machine.
func (c *mpiComm) identify() error {
	var r, n, l C.int
	if rc := C.fx_rank(&r); rc != C.MPI_SUCCESS {
		return mpiError("rank", rc)
	}
	if rc := C.fx_size(&n); rc != C.MPI_SUCCESS {
		return mpiError("size", rc)
	}
	c.rank, c.size = int(r), int(n)
	rc := C.fx_local_rank(&l)
	c.local = int(l)
	if rc == C.MPI_SUCCESS {
		return nil
	}
	v, ok := localRankFromEnv()
	if !ok {
		return mpiError("local rank", rc)
	}
	c.local = v
	return nil
}

// localRankFromEnv is the rank on this machine that the launcher gives in the environment.
func localRankFromEnv() (int, bool) {
	for _, k := range []string{"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"} {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v >= 0 {
			return v, true
		}
	}
	return 0, false
}

// serve runs the jobs on one OS thread, the one that initializes MPI, until the last.
func (c *mpiComm) serve() {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	for j := range c.jobs {
		j.done <- j.run()
		if j.last {
			close(c.gone)
			return
		}
	}
}

// errClosed is the error of a call after Close.
var errClosed = errors.New("closed")

// do runs f on the MPI thread and waits for its error.
func (c *mpiComm) do(f func() error, last bool) error {
	j := job{run: f, done: make(chan error, 1), last: last}
	select {
	case c.jobs <- j:
		return <-j.done
	case <-c.gone:
		return errClosed
	}
}

// call runs one MPI operation, op in its error, on the MPI thread.
func (c *mpiComm) call(op string, f func() C.int) error {
	err := c.do(func() error {
		if rc := f(); rc != C.MPI_SUCCESS {
			return mpiError(op, rc)
		}
		return nil
	}, false)
	if errors.Is(err, errClosed) {
		return fmt.Errorf("dist: %s: %w", op, err)
	}
	return err
}

// mpiError is MPI's own message for rc; it must run on the MPI thread.
func mpiError(op string, rc C.int) error {
	return fmt.Errorf("dist: %s: %s (MPI error %d)", op, C.GoString(C.fx_error_string(rc)), int(rc))
}

// chunked calls f on [off, off+n) pieces of a buffer of length total, at most chunkLen long, until one
// fails. An empty buffer makes no call.
func chunked(total int, f func(off, n int) C.int) C.int {
	for off := 0; off < total; off += chunkLen {
		if rc := f(off, min(chunkLen, total-off)); rc != C.MPI_SUCCESS {
			return rc
		}
	}
	return C.MPI_SUCCESS
}

var _ Comm = (*mpiComm)(nil)

// Rank is MPI_Comm_rank of COMM_WORLD, read at Open.
func (c *mpiComm) Rank() int { return c.rank }

// Size is MPI_Comm_size of COMM_WORLD, read at Open.
func (c *mpiComm) Size() int { return c.size }

// LocalRank is the rank among the processes that share this machine's memory (MPI_COMM_TYPE_SHARED),
// or, where MPI cannot tell, the launcher's local rank from the environment.
func (c *mpiComm) LocalRank() int { return c.local }

// SumFloat32 is MPI_Allreduce(MPI_IN_PLACE, MPI_SUM) on buf. Its values hold no Go pointers, so C may
// read and write buf where it lies.
func (c *mpiComm) SumFloat32(buf []float32) error {
	return c.call("allreduce", func() C.int {
		return chunked(len(buf), func(off, n int) C.int {
			return C.fx_sum_float((*C.float)(unsafe.Pointer(&buf[off])), C.int(n))
		})
	})
}

// SumFloat64 is SumFloat32 for float64 values.
func (c *mpiComm) SumFloat64(buf []float64) error {
	return c.call("allreduce", func() C.int {
		return chunked(len(buf), func(off, n int) C.int {
			return C.fx_sum_double((*C.double)(unsafe.Pointer(&buf[off])), C.int(n))
		})
	})
}

// Bcast is MPI_Bcast of buf's bytes from root.
func (c *mpiComm) Bcast(buf []byte, root int) error {
	if root < 0 || root >= c.size {
		return fmt.Errorf("dist: bcast: root %d of %d ranks", root, c.size)
	}
	return c.call("bcast", func() C.int {
		return chunked(len(buf), func(off, n int) C.int {
			return C.fx_bcast(unsafe.Pointer(&buf[off]), C.int(n), C.int(root))
		})
	})
}

// Barrier is MPI_Barrier.
func (c *mpiComm) Barrier() error { return c.call("barrier", func() C.int { return C.fx_barrier() }) }

// Abort is MPI_Abort on COMM_WORLD: the launcher ends every rank with code. After Close, or when the MPI
// thread stays busy with a call that another goroutine made, this process exits alone with code.
func (c *mpiComm) Abort(code int) {
	j := job{run: func() error { C.fx_abort(C.int(code)); return nil }, done: make(chan error, 1)}
	select {
	case c.jobs <- j:
		<-j.done
	case <-c.gone:
	case <-time.After(abortWait):
	}
	os.Exit(code)
}

// Close is MPI_Finalize; later calls return nil, and the other methods return errors.
func (c *mpiComm) Close() error {
	err := c.do(func() error {
		if rc := C.fx_finalize(); rc != C.MPI_SUCCESS {
			return mpiError("finalize", rc)
		}
		return nil
	}, true)
	if errors.Is(err, errClosed) {
		return nil
	}
	return err
}
