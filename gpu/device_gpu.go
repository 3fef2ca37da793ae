//go:build gpu

package gpu

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/flextrain/flextrain/model/ops"
)

//go:embed kernels.fatbin
var fatbin string

// kernelNames are the kernels of kernels.fatbin that a Device loads.
var kernelNames = []string{
	"adamw", "scale", "sum_squares", "rmsnorm", "swiglu", "swiglu_grad", "rms_rows", "rmsnorm_grad_x",
	"rmsnorm_grad_w", "rope", "xent_lse", "xent_grad", "attn_softmax", "attn_softmax_back", "layernorm",
	"quick_gelu", "gelu", "add_bias", "add", "flex_softmax", "scale_rows", "flex_blend", "gather_rows",
	"scatter_rows", "im2col", "accumulate", "weigh", "divide", "widen16", "narrow_bf16", "rows_softmax",
	"image_attention", "add_rows", "layernorm_grad_x", "ln_rows", "layernorm_grad_w", "quick_gelu_grad", "gelu_grad",
}

// Device is one GPU: its primary context, current on a goroutine locked to an OS thread that runs every
// driver call, the kernels, a stream and cuBLAS. It serves one goroutine at a time (a run's): the calls are
// queued to the thread in the order that goroutine makes them, and the stream runs them in that order, which
// is what lets a freed block be handed out again at once (below); Close releases it.
//
// Memory is cached, as PyTorch's allocator caches it: Free keeps a block for the next Alloc of its size
// class instead of returning it to the driver (cuMemFree waits for the whole device, which would stall the
// stream at every temporary). Every launch and copy goes on the one stream, in the order the callers
// queued them, so a block handed out again is written only after every kernel that used it before; the
// cache is the callers' own (blockCache), and only a new block takes a trip to the device's thread. An
// Alloc that finds the device full gives the cached blocks back and tries once more; Close frees them all.
type Device struct {
	Ordinal int
	Name    string
	work    chan func()
	fns     map[string]cu.Function
	stream  cu.Stream
	blas    *blas
	blocks  blockCache // idle blocks by size class, and the bytes handed out
	usage   Usage      // the products' operations, step times, uploads (on the device's thread)
	steps   *span      // times the training steps on the stream
	stage   *staging   // pinned memory for uploads; nil where it could not be had
	// stepping is set from a training step's first operation to its update's end (beginStep, endStep).
	stepping atomic.Bool
	posted   error // the first error of a posted call since the last do (on the device's thread)
}

// Buffer is n float32 values in the device's memory.
type Buffer struct {
	ptr cu.DevicePtr
	n   int
}

// Len is the buffer's length in values.
func (b Buffer) Len() int { return b.n }

// Open starts the GPU of that ordinal (cuda:N): its primary context, the embedded kernels, a stream, and
// cuBLAS with TF32 off unless tf32.
func Open(ordinal int, tf32 bool) (*Device, error) {
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("gpu: %w", err)
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("gpu: device cuda:%d: this machine has %d CUDA device(s)", ordinal, n)
	}
	d := &Device{Ordinal: ordinal, work: make(chan func(), queued), fns: map[string]cu.Function{},
		blocks: blockCache{idle: map[int][]cu.DevicePtr{}}}
	dev := cu.Device(ordinal)
	ready := make(chan error)
	go d.run(dev, ready)
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("gpu: device cuda:%d: %w", ordinal, err)
	}
	if err := d.do(func() error { return d.setUp(dev, tf32) }); err != nil {
		d.Close()
		return nil, fmt.Errorf("gpu: device cuda:%d: %w", ordinal, err)
	}
	return d, nil
}

// run is the device's thread: the primary context made current, then each call in turn until Close.
func (d *Device) run(dev cu.Device, ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	ctx, err := dev.RetainPrimaryCtx()
	if err == nil {
		err = cu.SetCurrentContext(ctx)
	}
	ready <- err
	if err != nil {
		return
	}
	for fn := range d.work {
		fn()
	}
	dev.ReleasePrimaryCtx()
}

// queued is how many calls may wait for the device's thread: a launch queues and returns (post) while the
// thread is still busy with the ones before it.
const queued = 4096

// do runs fn on the device's thread and returns its error, after every call queued before it; a posted
// call's error that no one has heard yet comes first.
func (d *Device) do(fn func() error) error {
	var err error
	d.call(func() {
		err = fn()
		if d.posted != nil {
			err, d.posted = errors.Join(d.posted, err), nil
		}
	})
	return err
}

// call runs fn on the device's thread and waits for it, leaving the posted calls' error for do.
func (d *Device) call(fn func()) {
	done := make(chan struct{})
	d.work <- func() {
		fn()
		close(done)
	}
	<-done
}

// check reports the first error of the calls posted so far, waiting only for them to be queued.
func (d *Device) check() error { return d.do(func() error { return nil }) }

// post queues fn on the device's thread without waiting for it: a kernel's launch or a product, which the
// stream puts in order anyway, costs the caller a channel send rather than a round trip to the thread. Its
// error, if any, is the next do's.
func (d *Device) post(fn func() error) {
	d.work <- func() {
		if err := fn(); err != nil && d.posted == nil {
			d.posted = err
		}
	}
}

// setUp loads the kernels, makes the stream and loads cuBLAS (on the device's thread).
func (d *Device) setUp(dev cu.Device, tf32 bool) (err error) {
	if d.Name, err = dev.Name(); err != nil {
		return err
	}
	mod, err := cu.LoadData(fatbin)
	if err != nil {
		return fmt.Errorf("load the kernels: %w", err)
	}
	for _, name := range kernelNames {
		if d.fns[name], err = mod.Function(name); err != nil {
			return fmt.Errorf("kernel %s: %w", name, err)
		}
	}
	if d.stream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return err
	}
	if d.steps, err = newSpan(); err != nil {
		return err
	}
	d.stage, _ = newStaging() // without it, uploads copy from pageable memory
	d.blas, err = newBLAS(unsafe.Pointer(d.stream.C()), tf32)
	return err
}

// Close releases the device: the cached memory, cuBLAS, the stream and the context.
func (d *Device) Close() error {
	err := d.do(func() error {
		errs := []error{d.stream.Synchronize(), d.emptyCache()} // no copy out of the staging buffer in flight
		if d.blas != nil {
			d.blas.close()
		}
		if d.steps != nil {
			errs = append(errs, d.steps.destroy())
		}
		if d.stage != nil {
			errs = append(errs, d.stage.free())
		}
		return errors.Join(append(errs, d.stream.Destroy())...)
	})
	close(d.work)
	return err
}

// Alloc returns a buffer of n float32 values (n > 0), not initialised: a cached block of its size class, or
// a new one (on the device's thread).
func (d *Device) Alloc(n int) (Buffer, error) {
	if n <= 0 {
		return Buffer{}, fmt.Errorf("gpu: an allocation of %d values", n)
	}
	c := ops.SizeClass(n)
	if ptr, ok := d.blocks.take(c); ok {
		return Buffer{ptr: ptr, n: n}, nil
	}
	b := Buffer{n: n}
	var err error
	d.call(func() { // a posted call's error is left for the next do: this block is good
		if b.ptr, err = cu.MemAlloc(int64(4 * c)); err != nil { // full, perhaps of cached blocks: give them back once
			if ferr := d.emptyCache(); ferr == nil {
				b.ptr, err = cu.MemAlloc(int64(4 * c))
			}
		}
	})
	if err != nil {
		return Buffer{}, fmt.Errorf("gpu: allocate %d MiB: %w", (4*c)>>20, err)
	}
	d.blocks.hold(c)
	return b, nil
}

// Usage is the device's work since Open: the most memory its buffers held at once, counted in whole
// blocks, cached ones left out (what PyTorch's torch.cuda.max_memory_allocated counts), and its matrix
// products' operations.
func (d *Device) Usage() Usage {
	var u Usage
	d.call(func() { u = d.usage })
	u.PeakBytes = d.blocks.peakBytes()
	return u
}

// Free keeps the buffer's block for a later Alloc of its size class. It may be handed out again at once:
// whatever reads it now was queued to the device's thread before, and the stream runs in order.
func (d *Device) Free(b Buffer) error {
	if b.n > 0 {
		d.blocks.give(ops.SizeClass(b.n), b.ptr)
	}
	return nil
}

// emptyCache returns every cached block to the driver (on the device's thread), once the stream has
// finished with them: a kernel queued before their Free may still read them.
func (d *Device) emptyCache() error {
	idle := d.blocks.drain()
	if len(idle) == 0 {
		return nil
	}
	errs := []error{d.stream.Synchronize()}
	for _, p := range idle {
		errs = append(errs, cu.MemFree(p))
	}
	return errors.Join(errs...)
}

// blockCache is the device's cache of idle blocks by size class (in values), and the count of the bytes
// handed out, safe for concurrent use: Alloc and Free use it on the caller's goroutine, without a round
// trip to the device's thread.
type blockCache struct {
	mu         sync.Mutex
	idle       map[int][]cu.DevicePtr
	held, peak int64
}

// take pops an idle block of class c, counting it held.
func (bc *blockCache) take(c int) (cu.DevicePtr, bool) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	idle := bc.idle[c]
	if len(idle) == 0 {
		return 0, false
	}
	bc.idle[c] = idle[:len(idle)-1]
	bc.count(c)
	return idle[len(idle)-1], true
}

// hold counts a new block of class c held.
func (bc *blockCache) hold(c int) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.count(c)
}

func (bc *blockCache) count(c int) {
	bc.held += 4 * int64(c)
	bc.peak = max(bc.peak, bc.held)
}

// give keeps block p of class c idle.
func (bc *blockCache) give(c int, p cu.DevicePtr) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.idle[c] = append(bc.idle[c], p)
	bc.held -= 4 * int64(c)
}

// drain empties the cache and returns its blocks.
func (bc *blockCache) drain() []cu.DevicePtr {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	var all []cu.DevicePtr
	for c, idle := range bc.idle {
		all = append(all, idle...)
		delete(bc.idle, c)
	}
	return all
}

// peakBytes is the most bytes held at once.
func (bc *blockCache) peakBytes() int64 {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	return bc.peak
}

// Upload copies host into b (as long as b).
func (d *Device) Upload(b Buffer, host []float32) error {
	if len(host) != b.n {
		return fmt.Errorf("gpu: upload %d values into a buffer of %d", len(host), b.n)
	}
	return d.copyUp(b, unsafe.Pointer(&host[0]), 4*b.n)
}

// Download copies b into host (as long as b), after every launch before it has finished.
func (d *Device) Download(host []float32, b Buffer) error {
	if len(host) != b.n {
		return fmt.Errorf("gpu: download a buffer of %d values into %d", b.n, len(host))
	}
	return d.copyDown(unsafe.Pointer(&host[0]), b, 4*b.n)
}

// copyUp copies bytes from host to the start of b, on the stream (after every launch before it, which may
// still read b's memory when an arena lent it again). host may be reused once it returns: the bytes went
// through the pinned staging buffer, or, for an upload too large for it, the copy is waited for.
func (d *Device) copyUp(b Buffer, host unsafe.Pointer, bytes int) error {
	return d.do(func() error {
		d.usage.UploadBytes += int64(bytes)
		if d.stage != nil {
			if staged, err := d.stage.upload(b.ptr, host, bytes, d.stream); staged || err != nil {
				return err
			}
		}
		if err := cu.MemcpyHtoDAsync(b.ptr, host, int64(bytes), d.stream); err != nil {
			return err
		}
		return d.stream.Synchronize()
	})
}

// copyWithin copies src into dst (as long as src) on the stream (queued: post).
func (d *Device) copyWithin(dst, src Buffer) error {
	if dst.n < src.n {
		return fmt.Errorf("gpu: copy of %d values into %d", src.n, dst.n)
	}
	d.post(func() error { return cu.MemcpyDtoDAsync(dst.ptr, src.ptr, int64(4*src.n), d.stream) })
	return nil
}

// copyDown copies bytes from the start of b to host, after every launch before it has finished.
func (d *Device) copyDown(host unsafe.Pointer, b Buffer, bytes int) error {
	return d.do(func() error {
		if err := d.stream.Synchronize(); err != nil {
			return err
		}
		return cu.MemcpyDtoH(host, b.ptr, int64(bytes))
	})
}

// Memory is the GPU's memory in bytes.
func (d *Device) Memory() (int64, error) {
	var total int64
	err := d.do(func() (err error) {
		_, total, err = cu.MemInfo()
		return err
	})
	return total, err
}

// Synchronize waits for every launch so far to finish.
func (d *Device) Synchronize() error { return d.do(d.stream.Synchronize) }

// newBuffer puts host values (of 2, 4 or 8 bytes each) in a new buffer (of float32 words: 16-bit values
// two to a word, the last word half used for an odd count).
func newBuffer[T uint16 | float32 | int64](d *Device, host []T) (Buffer, error) {
	if len(host) == 0 {
		return Buffer{}, errors.New("gpu: upload of no values")
	}
	size := int(unsafe.Sizeof(host[0]))
	b, err := d.Alloc((len(host)*size + 3) / 4)
	if err != nil {
		return b, err
	}
	if err := d.copyUp(b, unsafe.Pointer(&host[0]), len(host)*size); err != nil {
		d.Free(b)
		return Buffer{}, err
	}
	return b, nil
}

// readBuffer reads b's words as values of T (4 or 8 bytes each), after every launch before it.
func readBuffer[T float32 | float64](d *Device, b Buffer) ([]T, error) {
	var zero T
	v := make([]T, b.n*4/int(unsafe.Sizeof(zero)))
	return v, d.copyDown(unsafe.Pointer(&v[0]), b, b.n*4)
}

// Zero sets every value of b to 0 (queued: post).
func (d *Device) Zero(b Buffer) error {
	d.post(func() error { return cu.MemsetD32Async(b.ptr, 0, int64(b.n), d.stream) })
	return nil
}

// at is the device address of value off of b.
func (b Buffer) at(off int) cu.DevicePtr { return b.ptr + cu.DevicePtr(4*off) }

// launch starts kernel name on the device's stream with grid g and the kernel's arguments, each 8 bytes
// (cu's Launch copies 8 bytes per argument): device pointers, int64s and float64s. It queues the launch
// (post): a failed launch is reported by the next call that waits.
func (d *Device) launch(name string, g Grid, args ...any) error {
	vals := make([]uint64, len(args))
	ptrs := make([]unsafe.Pointer, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case cu.DevicePtr:
			vals[i] = uint64(v)
		case int64:
			vals[i] = uint64(v)
		case float64:
			vals[i] = math.Float64bits(v)
		default:
			return fmt.Errorf("gpu: kernel %s: argument %d is a %T, not 8 bytes", name, i, a)
		}
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	d.post(func() error {
		if err := d.fns[name].Launch(g.Blocks, 1, 1, g.Threads, 1, 1, 0, d.stream, ptrs); err != nil {
			return fmt.Errorf("gpu: kernel %s: %w", name, err)
		}
		return nil
	})
	return nil
}
