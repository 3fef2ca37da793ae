// Package devicetest is a stand-in for a GPU in tests: a model.Device, and a training run on it, whose
// arithmetic is the CPU's and whose memory is apart from its values. Each value it hands out wraps NaNs,
// and the numbers it stands for are kept aside by the value's address, so that code that reads a device
// value as host memory reads NaNs and fails its test, as it would crash on a GPU. A graph or a run on it
// must give the CPU's bits.
//
// It is written here rather than taken from a library because what it stands in for is flextrain's own
// device interfaces (model.Device, train's accelerator).
package devicetest

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"unsafe"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/dist"
	"github.com/flextrain/flextrain/dist/disttest"
	"github.com/flextrain/flextrain/gpu"
	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// Device is the stand-in model.Device. It counts what it runs. A value it takes back (Release,
// ReleaseAfter, Free) is gone from its memory: reading it later is an error, as a use after free would be.
type Device struct {
	Ran     map[string]int // kernels run, by name
	Adds    int            // sums of gradient contributions run through its engine
	Freed   int            // values freed before Release (ops.Releaser)
	mem     map[uintptr][]float32
	pins    map[uintptr][]float32 // each value's NaNs, kept until Release so that no later value takes its address
	views   map[uintptr][]uintptr // the views into each value (Unpack's parts), gone with it
	lent    []uintptr             // the values lent since the last Release, in order (0: freed since)
	marks   []int
	weights map[string]*tensor.Dense
	held    int64 // bytes of the values in mem
	peak    int64 // the most held at once
}

// New returns an empty device.
func New() *Device {
	return &Device{Ran: map[string]int{}, mem: map[uintptr][]float32{}, pins: map[uintptr][]float32{},
		views: map[uintptr][]uintptr{}, weights: map[string]*tensor.Dense{}}
}

// Run computes k with the CPU's arithmetic over host copies of in.
func (d *Device) Run(k ops.Kernel, in []G.Value) (G.Value, error) {
	d.Ran[k.Name]++
	if f, ok := k.Args.(ops.FuncArgs); ok { // a graph of its own, on this device
		return f.Run(in)
	}
	if a, ok := k.Args.(ops.UnpackArgs); ok { // a view, as on a GPU
		return d.view(in[0], a)
	}
	host := make([]G.Value, len(in))
	for i, v := range in {
		host[i] = v // a scalar
		if t, ok := v.(*tensor.Dense); ok {
			var err error
			if host[i], err = d.Download(t); err != nil {
				return nil, fmt.Errorf("%s: input %d: %w", k.Name, i, err)
			}
		}
	}
	out, err := k.RunOnCPU(host)
	if err != nil {
		return nil, err
	}
	if t, ok := out.(*tensor.Dense); ok {
		return d.lend(t), nil
	}
	return out, nil
}

// lend makes a device value holding a copy of t.
func (d *Device) lend(t *tensor.Dense) *tensor.Dense {
	poison := make([]float32, max(1, t.Shape().TotalSize()))
	for i := range poison {
		poison[i] = float32(math.NaN())
	}
	ptr := uintptr(unsafe.Pointer(unsafe.SliceData(poison)))
	d.pins[ptr] = poison
	d.mem[ptr] = slices.Clone(t.Data().([]float32))
	d.held += 4 * int64(len(d.mem[ptr]))
	d.peak = max(d.peak, d.held)
	d.lent = append(d.lent, ptr)
	return tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(t.Shape().Clone()...), tensor.WithEngine(engine{d}),
		tensor.FromMemory(ptr, uintptr(4*len(poison))))
}

// view is a part of a packed value that shares its memory, as a GPU's Unpack is: it is gone with the
// packed value.
func (d *Device) view(packed G.Value, a ops.UnpackArgs) (G.Value, error) {
	data, err := d.numbers(packed)
	n := a.Shape.TotalSize()
	if err == nil && (a.Off < 0 || a.Off+n > len(data)) {
		err = fmt.Errorf("devicetest: Unpack of [%d, %d) from %d values", a.Off, a.Off+n, len(data))
	}
	if err != nil {
		return nil, err
	}
	base := packed.(*tensor.Dense).Uintptr()
	ptr := base + uintptr(4*a.Off)
	if a.Off > 0 {
		d.mem[ptr] = data[a.Off : a.Off+n : a.Off+n]
		d.views[base] = append(d.views[base], ptr)
	}
	return tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(a.Shape.Clone()...), tensor.WithEngine(engine{d}),
		tensor.FromMemory(ptr, uintptr(4*max(1, n)))), nil
}

// numbers are the numbers a device value stands for (the device's memory).
func (d *Device) numbers(v G.Value) ([]float32, error) {
	t, ok := v.(*tensor.Dense)
	if !ok || t.Engine() != (engine{d}) {
		return nil, fmt.Errorf("devicetest: a %T that is not the device's", v)
	}
	data, ok := d.mem[t.Uintptr()]
	if !ok {
		return nil, errors.New("devicetest: a value the device never lent, or took back")
	}
	n := t.Shape().TotalSize()
	if n > len(data) {
		return nil, fmt.Errorf("devicetest: a value of %d numbers over %d", n, len(data))
	}
	return data[:n], nil
}

// Weight returns the device's copy of a weight, made the first time.
func (d *Device) Weight(name string, t *tensor.Dense) (G.Value, error) {
	if w, ok := d.weights[name]; ok {
		return w, nil
	}
	w := d.lend(t)
	d.lent = d.lent[:len(d.lent)-1] // a weight stays
	d.weights[name] = w
	return w, nil
}

// Upload returns a device copy of t.
func (d *Device) Upload(t *tensor.Dense) (G.Value, error) { return d.lend(t), nil }

// Download returns a host copy of a device value.
func (d *Device) Download(v G.Value) (*tensor.Dense, error) {
	data, err := d.numbers(v)
	if err != nil {
		return nil, err
	}
	return tensor.New(tensor.WithShape(v.Shape().Clone()...), tensor.WithBacking(slices.Clone(data))), nil
}

// Engine is the tensor engine of the device's values.
func (d *Device) Engine() tensor.Engine { return engine{d} }

// Lent is the number of values lent since the last Release.
func (d *Device) Lent() int { return len(d.lent) }

// Release takes every lent value back.
func (d *Device) Release() {
	for _, p := range d.lent {
		d.drop(p)
	}
	for p := range d.pins {
		if _, ok := d.mem[p]; !ok {
			delete(d.pins, p)
		}
	}
	d.lent, d.marks = nil, nil
}

// Free takes back a value lent since the last Release that no kernel reads any more (ops.Releaser).
func (d *Device) Free(v G.Value) {
	t, ok := v.(*tensor.Dense)
	if !ok || t.Engine() != (engine{d}) {
		return
	}
	if i := slices.Index(d.lent, t.Uintptr()); i >= 0 {
		d.drop(d.lent[i])
		d.lent[i] = 0 // the slot stays, so that Mark's positions hold
		d.Freed++
	}
}

// packed is a value held in bfloat16 (Pack): the device value of its bits, two to a float32.
type packed struct {
	bits *tensor.Dense
	n    int
}

// Pack holds v's numbers rounded to bfloat16, as their bits in a device value of half v's size
// (ops.Packer).
func (d *Device) Pack(v G.Value) (any, error) {
	data, err := d.numbers(v)
	if err != nil {
		return nil, err
	}
	d.Ran["Pack"]++
	bits := make([]uint16, 2*((len(data)+1)/2))
	for i, x := range data {
		bits[i] = half.BFloat16.Round(x)
	}
	words := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(bits))), len(bits)/2)
	return packed{d.lend(tensor.New(tensor.WithShape(len(words)), tensor.WithBacking(words))), len(data)}, nil
}

// Unpack widens what Pack held into a new value of shape, and takes the bits back (ops.Packer).
func (d *Device) Unpack(p any, shape tensor.Shape) (G.Value, error) {
	pk, ok := p.(packed)
	if !ok || shape.TotalSize() != pk.n {
		return nil, fmt.Errorf("devicetest: Unpack of %T as %v", p, shape)
	}
	words, err := d.numbers(pk.bits)
	if err != nil {
		return nil, err
	}
	d.Ran["Unpack"]++
	bits := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(words))), 2*len(words))
	wide := make([]float32, pk.n)
	half.BFloat16.Widen(wide, bits[:pk.n])
	d.Free(pk.bits)
	return d.lend(tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(wide))), nil
}

// FreeSaved has nothing to free: the operations' CPU arithmetic keeps their saved state itself.
func (d *Device) FreeSaved(*ops.Saved) {}

// Mark notes what is lent now.
func (d *Device) Mark() int {
	d.marks = append(d.marks, len(d.lent))
	return len(d.marks) - 1
}

// ReleaseAfter takes back every value lent since the mark but keep.
func (d *Device) ReleaseAfter(mark int, keep ...G.Value) {
	at := d.marks[mark]
	d.marks = d.marks[:mark]
	kept := map[uintptr]bool{}
	for _, v := range keep {
		if t, ok := v.(*tensor.Dense); ok {
			kept[t.Uintptr()] = true
		}
	}
	lent := d.lent[at:]
	d.lent = d.lent[:at]
	for _, p := range lent {
		if kept[p] {
			d.lent = append(d.lent, p)
			continue
		}
		d.drop(p)
	}
}

// drop takes the value at p back.
func (d *Device) drop(p uintptr) {
	d.held -= 4 * int64(len(d.mem[p]))
	delete(d.mem, p)
	for _, v := range d.views[p] {
		delete(d.mem, v)
	}
	delete(d.views, p)
}

// Usage gives the most memory in bytes that the device's values (weights included) held at once; it counts
// no operations.
func (d *Device) Usage() gpu.Usage { return gpu.Usage{PeakBytes: d.peak} }

// engine is the tensor engine of the device's values: Gorgonia's sums of gradient contributions.
type engine struct{ d *Device }

func (engine) AllocAccessible() bool                           { return false }
func (engine) Alloc(int64) (tensor.Memory, error)              { return nil, errors.New("devicetest: Alloc") }
func (engine) Free(tensor.Memory, int64) error                 { return nil }
func (engine) Memset(tensor.Memory, any) error                 { return errors.New("devicetest: Memset") }
func (engine) Memclr(tensor.Memory)                            {}
func (engine) Memcpy(_, _ tensor.Memory) error                 { return errors.New("devicetest: Memcpy") }
func (engine) Accessible(tensor.Memory) (tensor.Memory, error) { return nil, errors.New("devicetest") }
func (engine) WorksWith(tensor.DataOrder) bool                 { return true }

// Add is a + b, in a new value.
func (e engine) Add(a, b tensor.Tensor, _ ...tensor.FuncOpt) (tensor.Tensor, error) {
	e.d.Adds++
	x, err := e.d.Download(a)
	if err != nil {
		return nil, err
	}
	y, err := e.d.numbers(b)
	if err != nil {
		return nil, err
	}
	sum := x.Data().([]float32)
	for i, v := range y {
		sum[i] += v
	}
	return e.d.lend(x), nil
}

func (engine) AddScalar(tensor.Tensor, any, bool, ...tensor.FuncOpt) (tensor.Tensor, error) {
	return nil, errors.New("devicetest: AddScalar")
}

// Training is a training run on the stand-in device, as gpu.Training is on a GPU: the step's gradient and
// AdamW run on the device's copies of the weights (optim's arithmetic), and Sync brings them and the
// moments to the host.
type Training struct {
	*Device
	MemoryBytes int64 // what Memory reports: 1 TiB unless set
	// Groups, when set, lets the stand-ins of several ranks sum among themselves, as NCCL lets GPUs do.
	Groups  *Groups
	Grouped int       // Reduce calls that summed in the group
	group   dist.Comm // this rank in its group, once joined
	host    []optim.Param[float32]
	params  []optim.Param[float32] // the device's: values in its memory, its own gradients
	acc     optim.Accumulator[float32]
	opt     *optim.AdamW[float32] // the device's moments
	Closed  bool
	// Fault, when set, is asked before each Accumulate and Update, with the method's name and how many
	// times it was called before: an error it returns is the call's (a device out of memory, say).
	Fault func(method string, calls int) error
	calls map[string]int
}

// fault asks Fault about this call of method.
func (t *Training) fault(method string) error {
	if t.Fault == nil {
		return nil
	}
	if t.calls == nil {
		t.calls = map[string]int{}
	}
	t.calls[method]++
	return t.Fault(method, t.calls[method]-1)
}

// NewTraining returns a run over the host's trainable weights params.
func NewTraining(params []optim.Param[float32]) *Training {
	return &Training{Device: New(), host: params}
}

// Accumulate takes a graph's gradients: alone as the step's, or tokens·gradient into the step's sums.
func (t *Training) Accumulate(grads map[string]*tensor.Dense, tokens int, alone bool) error {
	if err := t.fault("Accumulate"); err != nil {
		return err
	}
	if err := t.prepare(); err != nil {
		return err
	}
	for i := range t.params {
		p := &t.params[i]
		clear(p.Grad)
		if g, ok := grads[p.Name]; ok {
			data, err := t.numbers(g)
			if err != nil {
				return err
			}
			copy(p.Grad, data)
		}
	}
	if alone {
		return nil
	}
	return t.acc.Add(t.params, tokens)
}

// Update ends the step as the host does: the mean of the sums, clipping, AdamW.
func (t *Training) Update(o *optim.AdamW[float32], lr, maxNorm float64, _ int, alone bool) (float64, error) {
	if err := t.fault("Update"); err != nil {
		return 0, err
	}
	if t.opt == nil {
		t.opt = &optim.AdamW[float32]{Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay, Step: o.Step,
			M: clone(o.M), V: clone(o.V)}
	}
	if !alone {
		if _, err := t.acc.Finish(t.params); err != nil {
			return 0, err
		}
	}
	norm, err := optim.ClipGradNorm(t.params, maxNorm)
	if err != nil {
		return norm, err
	}
	err = t.opt.Update(t.params, lr)
	o.Step = t.opt.Step
	return norm, err
}

// Memory reports MemoryBytes, 1 TiB unless set.
func (t *Training) Memory() (int64, error) {
	if t.MemoryBytes == 0 {
		return 1 << 40, nil
	}
	return t.MemoryBytes, nil
}

// Reduce sums the step's sums over the ranks, as the host does (optim.Accumulator.Reduce): with sum, or,
// once the run joined a group, over the group's own ranks.
func (t *Training) Reduce(tokens int, sum func([]float32) error) error {
	if err := t.prepare(); err != nil {
		return err
	}
	if t.group != nil {
		t.Grouped++
		sum = t.group.SumFloat32
	}
	return t.acc.Reduce(t.params, tokens, sum)
}

// Groups is where the stand-ins of several ranks meet to sum among themselves (CanGroup, GroupID,
// JoinGroup, as gpu.Training's NCCL groups): each group is a world of disttest ranks, whose sums run in
// rank order as the host's comm does. Share one Groups between a test's ranks.
type Groups struct {
	mu     sync.Mutex
	made   int
	worlds map[string][]dist.Comm
}

// CanGroup fails unless the run has Groups.
func (t *Training) CanGroup() error {
	if t.Groups == nil {
		return errors.New("devicetest: no groups")
	}
	return nil
}

// GroupID names a new group.
func (t *Training) GroupID() ([]byte, error) {
	if err := t.CanGroup(); err != nil {
		return nil, err
	}
	g := t.Groups
	g.mu.Lock()
	defer g.mu.Unlock()
	g.made++
	return fmt.Appendf(nil, "group %d", g.made), nil
}

// JoinGroup makes the run the rank-th of size in the group id.
func (t *Training) JoinGroup(id []byte, rank, size int) error {
	if err := t.CanGroup(); err != nil {
		return err
	}
	g := t.Groups
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.worlds == nil {
		g.worlds = map[string][]dist.Comm{}
	}
	w, ok := g.worlds[string(id)]
	if !ok {
		w = disttest.Local(size)
		g.worlds[string(id)] = w
	}
	if len(w) != size || rank < 0 || rank >= size {
		return fmt.Errorf("devicetest: rank %d of %d in %s, a group of %d", rank, size, id, len(w))
	}
	t.group = w[rank]
	return nil
}

// Discard forgets the step's sums.
func (t *Training) Discard() { t.acc.Reset() }

// Sync copies the device's weights and moments to the host.
func (t *Training) Sync(o *optim.AdamW[float32]) error {
	for i, p := range t.params {
		copy(t.host[i].Value, p.Value)
	}
	if t.opt != nil {
		o.M, o.V = clone(t.opt.M), clone(t.opt.V)
	}
	return nil
}

// Close marks the run closed.
func (t *Training) Close() error {
	t.Closed = true
	return nil
}

// prepare makes the device's params: each weight's numbers in the device's memory (uploaded now if no
// graph used it), a gradient of its own.
func (t *Training) prepare() error {
	if t.params != nil {
		return nil
	}
	for _, p := range t.host {
		w, err := t.Weight(p.Name, tensor.New(tensor.WithShape(p.Shape...), tensor.WithBacking(p.Value)))
		if err != nil {
			return err
		}
		value, err := t.numbers(w)
		if err != nil {
			return err
		}
		t.params = append(t.params, optim.Param[float32]{Name: p.Name, Shape: p.Shape, Value: value, Grad: make([]float32, len(value))})
	}
	return nil
}

func clone(m map[string][]float32) map[string][]float32 {
	if m == nil {
		return nil
	}
	out := make(map[string][]float32, len(m))
	for k, v := range maps.All(m) {
		out[k] = slices.Clone(v)
	}
	return out
}
