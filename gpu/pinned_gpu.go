//go:build gpu

package gpu

/*
#cgo LDFLAGS: -lcuda
#include <cuda.h>

static int pinned_alloc(void **p, size_t n) { return (int)cuMemAllocHost(p, n); }
*/
import "C"

import (
	"fmt"
	"unsafe"

	"gorgonia.org/cu"
)

// stagingBytes is the size of the pinned buffer uploads pass through.
const stagingBytes = 64 << 20

// staging is page-locked host memory that uploads pass through (stagingRing places them). A copy from
// pageable Go memory makes the driver wait for the whole stream before it starts, so every small upload
// of a step (a sample's index arrays, a layer's selection) would stall the device while the host prepares
// the next launches; a copy from pinned memory queues behind the stream's work as a kernel does.
type staging struct {
	ring stagingRing
	base unsafe.Pointer
}

// newStaging allocates the pinned buffer (on the device's thread, its context current).
func newStaging() (*staging, error) {
	var p unsafe.Pointer
	if status := C.pinned_alloc(&p, C.size_t(stagingBytes)); status != 0 {
		return nil, fmt.Errorf("cuMemAllocHost of %d MiB: CUDA error %d", stagingBytes>>20, int(status))
	}
	return &staging{ring: stagingRing{size: stagingBytes}, base: p}, nil
}

// upload queues a copy of bytes from host to dst on stream and reports whether it did: through the pinned
// buffer, draining the stream first when the buffer starts over. It declines an upload too large for the
// buffer.
func (s *staging) upload(dst cu.DevicePtr, host unsafe.Pointer, bytes int, stream cu.Stream) (bool, error) {
	off, drain, ok := s.ring.reserve(bytes)
	if !ok {
		return false, nil
	}
	if drain {
		if err := stream.Synchronize(); err != nil {
			return true, err
		}
	}
	pinned := unsafe.Add(s.base, off)
	copy(unsafe.Slice((*byte)(pinned), bytes), unsafe.Slice((*byte)(host), bytes))
	return true, cu.MemcpyHtoDAsync(dst, pinned, int64(bytes), stream)
}

// free releases the pinned buffer.
func (s *staging) free() error { return cu.MemFreeHost(s.base) }
