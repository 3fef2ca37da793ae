//go:build gpu

package gpu

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

// The NCCL entry points flextrain calls, by address: the library (libnccl.so.2) is opened at run time, as
// cuBLAS is, so that a binary without it still trains on one GPU, or sums over the host.
typedef struct { char internal[128]; } nccl_id; // ncclUniqueId: NCCL_UNIQUE_ID_BYTES
typedef int (*get_id_fn)(nccl_id *id);
typedef int (*init_rank_fn)(void **comm, int nranks, nccl_id id, int rank);
typedef int (*all_reduce_fn)(const void *send, void *recv, size_t count, int type, int op, void *comm, void *stream);
typedef int (*group_fn)(void);
typedef int (*destroy_fn)(void *comm);
typedef const char *(*error_string_fn)(int result);

typedef struct {
	void *lib;
	get_id_fn get_id;
	init_rank_fn init_rank;
	all_reduce_fn all_reduce;
	group_fn group_start, group_end;
	destroy_fn destroy;
	error_string_fn error_string;
} nccl_lib;

// nccl_open loads name into l; it returns why it could not (dlopen's message, or the entry point missing), or
// NULL.
static const char *nccl_open(nccl_lib *l, const char *name) {
	if (!(l->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL))) return dlerror();
	if (!(l->get_id = (get_id_fn)dlsym(l->lib, "ncclGetUniqueId"))) return "ncclGetUniqueId missing";
	if (!(l->init_rank = (init_rank_fn)dlsym(l->lib, "ncclCommInitRank"))) return "ncclCommInitRank missing";
	if (!(l->all_reduce = (all_reduce_fn)dlsym(l->lib, "ncclAllReduce"))) return "ncclAllReduce missing";
	if (!(l->group_start = (group_fn)dlsym(l->lib, "ncclGroupStart"))) return "ncclGroupStart missing";
	if (!(l->group_end = (group_fn)dlsym(l->lib, "ncclGroupEnd"))) return "ncclGroupEnd missing";
	if (!(l->destroy = (destroy_fn)dlsym(l->lib, "ncclCommDestroy"))) return "ncclCommDestroy missing";
	if (!(l->error_string = (error_string_fn)dlsym(l->lib, "ncclGetErrorString"))) return "ncclGetErrorString missing";
	return NULL;
}

static int nccl_get_id(nccl_lib *l, void *out) {
	nccl_id id;
	int r = l->get_id(&id);
	memcpy(out, id.internal, sizeof id.internal);
	return r;
}
static int nccl_init_rank(nccl_lib *l, void **comm, int nranks, const void *in, int rank) {
	nccl_id id;
	memcpy(id.internal, in, sizeof id.internal);
	return l->init_rank(comm, nranks, id, rank);
}
// An in-place sum of count float32 values (ncclFloat32 7, ncclSum 0) at the device address buf.
static int nccl_sum_float32(nccl_lib *l, unsigned long long buf, size_t count, void *comm, void *stream) {
	return l->all_reduce((const void *)buf, (void *)buf, count, 7, 0, comm, stream);
}
static int nccl_group_start(nccl_lib *l) { return l->group_start(); }
static int nccl_group_end(nccl_lib *l) { return l->group_end(); }
static int nccl_destroy(nccl_lib *l, void *comm) { return l->destroy(comm); }
static const char *nccl_error(nccl_lib *l, int r) { return l->error_string(r); }
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"
)

// ncclLibrary is the NCCL soname tried: NCCL 2 (a CUDA toolkit's, a system package's, or the one PyTorch's
// wheels install, found through LD_LIBRARY_PATH).
const ncclLibrary = "libnccl.so.2"

// ncclIDBytes is the length of an NCCL group's identity (NCCL_UNIQUE_ID_BYTES).
const ncclIDBytes = 128

// The library, loaded once per process.
var (
	ncclOnce sync.Once
	ncclLib  *C.nccl_lib
	ncclErr  error
)

// loadNCCL opens NCCL the first time it is called.
func loadNCCL() (*C.nccl_lib, error) {
	ncclOnce.Do(func() {
		l := (*C.nccl_lib)(C.calloc(1, C.sizeof_nccl_lib))
		name := C.CString(ncclLibrary)
		defer C.free(unsafe.Pointer(name))
		if why := C.nccl_open(l, name); why != nil {
			ncclErr = fmt.Errorf("gpu: %s could not be loaded: %s (set LD_LIBRARY_PATH to the folder that holds it)", ncclLibrary, C.GoString(why))
			C.free(unsafe.Pointer(l))
			return
		}
		ncclLib = l
	})
	return ncclLib, ncclErr
}

// group is this GPU's place in an NCCL communicator: the ranks' GPUs sum among themselves.
type group struct {
	l    *C.nccl_lib
	comm unsafe.Pointer
}

// check turns an NCCL result into an error naming the call.
func (g group) check(call string, r C.int) error {
	if r != 0 {
		return fmt.Errorf("gpu: %s: NCCL error %d (%s)", call, int(r), C.GoString(C.nccl_error(g.l, r)))
	}
	return nil
}

// CanGroup says why this GPU cannot join a group of GPUs (NCCL cannot be loaded), or nil.
func (t *Training) CanGroup() error {
	_, err := loadNCCL()
	return err
}

// GroupID makes the identity of a new group of GPUs (NCCL's unique id, 128 bytes), which one rank makes and
// every rank passes to JoinGroup.
func (t *Training) GroupID() ([]byte, error) {
	l, err := loadNCCL()
	if err != nil {
		return nil, err
	}
	id := make([]byte, ncclIDBytes)
	return id, group{l: l}.check("ncclGetUniqueId", C.nccl_get_id(l, unsafe.Pointer(&id[0])))
}

// JoinGroup makes this GPU the rank-th of size in the group id (ncclCommInitRank, which waits for every
// rank): from then on Reduce sums the step's gradients among the GPUs, on the device's stream.
func (t *Training) JoinGroup(id []byte, rank, size int) error {
	if len(id) != ncclIDBytes {
		return fmt.Errorf("gpu: a group id of %d bytes, NCCL's has %d", len(id), ncclIDBytes)
	}
	if t.group != nil {
		return errors.New("gpu: this run has joined a group already")
	}
	l, err := loadNCCL()
	if err != nil {
		return err
	}
	g := &group{l: l}
	cid := C.CBytes(id)
	defer C.free(cid)
	err = t.d.do(func() error { // on the device's thread, where its context is current
		return g.check("ncclCommInitRank", C.nccl_init_rank(l, &g.comm, C.int(size), cid, C.int(rank)))
	})
	if err != nil {
		return err
	}
	t.group = g
	return nil
}

// sumInGroup replaces each buffer with its sum over the group's GPUs, in one NCCL group call.
func (t *Training) sumInGroup(bufs []Buffer) error {
	g := t.group
	return t.d.do(func() error {
		if err := g.check("ncclGroupStart", C.nccl_group_start(g.l)); err != nil {
			return err
		}
		var errs []error
		for _, b := range bufs {
			errs = append(errs, g.check("ncclAllReduce", C.nccl_sum_float32(g.l, C.ulonglong(b.ptr), C.size_t(b.n),
				g.comm, unsafe.Pointer(t.d.stream.C()))))
		}
		return errors.Join(append(errs, g.check("ncclGroupEnd", C.nccl_group_end(g.l)))...)
	})
}

// leaveGroup destroys the communicator, if any.
func (t *Training) leaveGroup() error {
	if t.group == nil {
		return nil
	}
	g := t.group
	t.group = nil
	return t.d.do(func() error { return g.check("ncclCommDestroy", C.nccl_destroy(g.l, g.comm)) })
}
