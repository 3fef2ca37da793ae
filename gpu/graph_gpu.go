//go:build gpu

package gpu

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gorgonia.org/cu"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// Graphs runs model graphs on a Device (it is a model.Device): the weights stay in the device's memory
// across graphs, every other value is lent for one graph (from the device's cache: the next graph finds
// the same blocks), and each operation runs as the device's kernel (graphops_gpu.go) or, for those without
// one, on the CPU over copies of its inputs (counted in Fallbacks: the tagger's pooling and loss, which
// no graph of fit's has). Not safe for concurrent use: one graph runs at a time.
type Graphs struct {
	d         *Device
	weights   map[string]Buffer
	halves    map[*uint16]Buffer        // frozen 16-bit weights, as their bits
	isWeight  map[cu.DevicePtr]bool     // the weights' addresses
	bf16      map[cu.DevicePtr]bf16Copy // bfloat16 copies of weights that bfloat16 products read, by address
	lent      []Buffer                  // lent since the last Release
	saved     []savedState              // what forward passes saved for their backward passes
	freed     map[*tensor.Dense]bool    // values freed before Release (ops.PlanReleases), which no kernel may read
	marks     [][2]int                  // Mark's: the lengths of lent and saved
	tables    map[*float64]Buffer
	known     map[cu.DevicePtr][]float32 // values lent since Release whose numbers the host made (the selection's cells)
	Fallbacks map[string]int             // operations run on the CPU over copies, by kernel name
}

// Graphs returns a new runner of graphs on d.
func (d *Device) Graphs() *Graphs {
	return &Graphs{d: d, weights: map[string]Buffer{}, halves: map[*uint16]Buffer{}, isWeight: map[cu.DevicePtr]bool{},
		bf16: map[cu.DevicePtr]bf16Copy{}, tables: map[*float64]Buffer{}, known: map[cu.DevicePtr][]float32{},
		freed: map[*tensor.Dense]bool{}, Fallbacks: map[string]int{}}
}

// Run computes one operation of a graph (ops.Device).
func (g *Graphs) Run(k ops.Kernel, in []G.Value) (G.Value, error) {
	if err := g.d.beginStep(); err != nil {
		return nil, err
	}
	for i, v := range in {
		if err := g.live(v); err != nil {
			return nil, fmt.Errorf("gpu: %s: input %d: %w", k.Name, i, err)
		}
	}
	if f, ok := k.Args.(ops.FuncArgs); ok { // it runs a graph of its own, on this device
		return f.Run(in)
	}
	name := k.Name
	if strings.HasPrefix(name, "Unpack") {
		name = "Unpack"
	}
	run, ok := graphOps[name]
	if !ok {
		g.Fallbacks[k.Name]++
		return g.onCPU(k, in)
	}
	v, err := run(g, k, in)
	if err != nil {
		return nil, fmt.Errorf("gpu: %s: %w", k.Name, err)
	}
	return v, nil
}

// onCPU runs k with the CPU's arithmetic over host copies of in, and puts its output on the device.
func (g *Graphs) onCPU(k ops.Kernel, in []G.Value) (G.Value, error) {
	host := make([]G.Value, len(in))
	for i, v := range in {
		host[i] = v
		if _, ok := v.(tensor.Tensor); ok {
			t, err := g.Download(v)
			if err != nil {
				return nil, fmt.Errorf("gpu: %s on the CPU: input %d: %w", k.Name, i, err)
			}
			host[i] = t
		}
	}
	out, err := k.RunOnCPU(host)
	if err != nil {
		return nil, err
	}
	if t, ok := out.(*tensor.Dense); ok {
		return g.Upload(t)
	}
	return out, nil
}

// Weight returns the device's copy of a weight, made from t the first time (model.Device). From then on the
// device's copy is the weight: an optimizer on the device updates it, and ReadWeight brings it back.
func (g *Graphs) Weight(name string, t *tensor.Dense) (G.Value, error) {
	b, ok := g.weights[name]
	if !ok {
		host, ok := t.Data().([]float32)
		if !ok {
			return nil, fmt.Errorf("gpu: weight %s is %v, not float32", name, t.Dtype())
		}
		var err error
		if b, err = newBuffer(g.d, host); err != nil {
			return nil, fmt.Errorf("gpu: weight %s: %w", name, err)
		}
		g.weights[name] = b
		g.isWeight[b.ptr] = true
	}
	if b.n != t.Shape().TotalSize() {
		return nil, fmt.Errorf("gpu: weight %s holds %d values on the device, %v asked", name, b.n, t.Shape())
	}
	return g.value(b, t.Shape()...), nil
}

// ReadWeight copies the device's copy of weight name into host.
func (g *Graphs) ReadWeight(name string, host []float32) error {
	b, ok := g.weights[name]
	if !ok {
		return fmt.Errorf("gpu: weight %s is not on the device", name)
	}
	return g.d.Download(host, b)
}

// Upload returns a device copy of t, lent until Release (model.Device).
func (g *Graphs) Upload(t *tensor.Dense) (G.Value, error) {
	host, ok := t.Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("gpu: upload of %v values: float32 only", t.Dtype())
	}
	b, err := g.lend(len(host))
	if err == nil && len(host) > 0 {
		err = g.d.Upload(b, host)
	}
	if err != nil {
		return nil, err
	}
	return g.value(b, t.Shape()...), nil
}

// hostValues are the numbers of b on the host: those the host made it from (known), or downloaded.
func (g *Graphs) hostValues(b Buffer) ([]float32, error) {
	if v, ok := g.known[b.ptr]; ok && len(v) == b.n {
		return v, nil
	}
	v := make([]float32, b.n)
	if b.n == 0 {
		return v, nil
	}
	return v, g.d.Download(v, b)
}

// Download returns a host copy of a device value (model.Device): of the numbers the host made it from where
// it has them (the selection's cells), without waiting for the device.
func (g *Graphs) Download(v G.Value) (*tensor.Dense, error) {
	b, err := buffer(v)
	if err == nil {
		err = g.live(v)
	}
	if err != nil {
		return nil, err
	}
	host, err := g.hostValues(b)
	if err != nil {
		return nil, err
	}
	if _, known := g.known[b.ptr]; known {
		host = slices.Clone(host)
	}
	return tensor.New(tensor.WithShape(v.Shape().Clone()...), tensor.WithBacking(host)), nil
}

// Engine is the tensor engine of the graphs' values (model.Device).
func (g *Graphs) Engine() tensor.Engine { return engine{g} }

// Release takes back every value lent since the last Release and frees what forward passes saved
// (model.Device).
func (g *Graphs) Release() {
	for _, s := range g.saved {
		s.release()
	}
	for _, b := range g.lent {
		g.d.Free(b)
	}
	g.saved, g.lent, g.marks, g.tables = nil, nil, nil, map[*float64]Buffer{}
	clear(g.known)
	clear(g.freed)
}

// Free frees a graph value that no kernel reads any more (ops.Releaser): the block it lies in goes back to
// the device's cache, where the next value of its size class finds it, in the stream's order. A value not
// lent since the last Release (a weight, a host scalar) is not among those claim finds, and stays.
func (g *Graphs) Free(v G.Value) {
	t, ok := v.(*tensor.Dense)
	if !ok || g.freed[t] {
		return
	}
	b, err := buffer(v)
	if err != nil {
		return
	}
	block, ok := g.claim(b)
	if !ok {
		return
	}
	g.freed[t] = true
	delete(g.known, block.ptr)
	g.d.Free(block)
}

// bf16Held is a value held in bfloat16 between a step's passes (Pack): its bits, two to a float32 of bits,
// and how many.
type bf16Held struct {
	bits Buffer
	n    int
}

// Pack holds v's numbers rounded to bfloat16 in a block of half its size, lent until Unpack or Release
// (ops.Packer): the caller frees v.
func (g *Graphs) Pack(v G.Value) (any, error) {
	b, err := buffer(v)
	if err == nil {
		err = g.live(v)
	}
	if err != nil {
		return nil, err
	}
	bits, err := g.lend((b.n + 1) / 2)
	if err == nil && b.n > 0 {
		_, err = g.d.narrowBF16(bits, b)
	}
	if err != nil {
		return nil, fmt.Errorf("gpu: Pack: %w", err)
	}
	return bf16Held{bits, b.n}, nil
}

// Unpack widens what Pack held into a new value of shape, and frees the bits (ops.Packer).
func (g *Graphs) Unpack(held any, shape tensor.Shape) (G.Value, error) {
	h, ok := held.(bf16Held)
	if !ok || shape.TotalSize() != h.n {
		return nil, fmt.Errorf("gpu: Unpack of %T as %v", held, shape)
	}
	wide, out, err := g.output(shape...)
	if err == nil {
		err = g.d.widenBF16(wide, h.bits)
	}
	if err != nil {
		return nil, fmt.Errorf("gpu: Unpack: %w", err)
	}
	if block, ok := g.claim(h.bits); ok {
		g.d.Free(block)
	}
	return out, nil
}

// FreeSaved frees what a forward pass saved in s, once its backward kernels have run (ops.Releaser).
func (g *Graphs) FreeSaved(s *ops.Saved) {
	for i := len(g.saved) - 1; i >= 0; i-- {
		if g.saved[i].of == s {
			g.saved[i].release()
			return
		}
	}
}

// errFreed is a read of a value freed before it: a kernel would read another value's numbers.
var errFreed = errors.New("a value freed before its last read (the graph ran in another order than its releases were planned in)")

// live refuses a value that was freed (errFreed).
func (g *Graphs) live(v G.Value) error {
	if t, ok := v.(*tensor.Dense); ok && g.freed[t] {
		return errFreed
	}
	return nil
}

// savedState is what a forward pass saved for its backward pass: where (of), and how it is freed.
type savedState struct {
	of   *ops.Saved
	free func()
}

// save keeps v in s for the backward pass until FreeSaved(s) or Release, which call free.
func (g *Graphs) save(s *ops.Saved, v any, free func()) {
	s.Value = v
	g.saved = append(g.saved, savedState{s, free})
}

// release frees the saved state once.
func (s *savedState) release() {
	if s.free != nil {
		s.free()
		s.of.Value, s.free = nil, nil
	}
}

// Mark notes what is lent now, for ReleaseAfter (model.Device).
func (g *Graphs) Mark() int {
	g.marks = append(g.marks, [2]int{len(g.lent), len(g.saved)})
	return len(g.marks) - 1
}

// ReleaseAfter frees every value lent since Mark gave mark, and what forward passes saved since, but keep,
// which stay lent (model.Device).
func (g *Graphs) ReleaseAfter(mark int, keep ...G.Value) {
	if mark < 0 || mark >= len(g.marks) {
		return
	}
	at := g.marks[mark]
	g.marks = g.marks[:mark]
	for i := range g.saved[at[1]:] {
		g.saved[at[1]+i].release()
	}
	kept := map[cu.DevicePtr]bool{}
	for _, v := range keep {
		if b, err := buffer(v); err == nil && b.n > 0 {
			kept[b.ptr] = true
		}
	}
	lent := g.lent[at[0]:]
	g.lent, g.saved = g.lent[:at[0]], g.saved[:at[1]]
	freed := map[cu.DevicePtr]bool{}
	for _, b := range lent {
		if kept[b.ptr] {
			g.lent = append(g.lent, b)
			continue
		}
		g.d.Free(b)
		freed[b.ptr] = true
	}
	for key, b := range g.tables { // a RoPE table uploaded since the mark went too
		if freed[b.ptr] {
			delete(g.tables, key)
		}
	}
	for ptr := range g.known {
		if freed[ptr] {
			delete(g.known, ptr)
		}
	}
}

// Close frees the graphs' values and the weights; the device stays open.
func (g *Graphs) Close() error {
	g.Release()
	var errs []error
	for _, b := range g.weights {
		errs = append(errs, g.d.Free(b))
	}
	for _, b := range g.halves {
		errs = append(errs, g.d.Free(b))
	}
	for _, c := range g.bf16 {
		errs = append(errs, g.d.Free(c.bits))
	}
	g.weights, g.halves, g.isWeight, g.bf16 = map[string]Buffer{}, map[*uint16]Buffer{}, map[cu.DevicePtr]bool{}, map[cu.DevicePtr]bf16Copy{}
	return errors.Join(errs...)
}

// lend returns a buffer of n values (not initialised) until Release.
func (g *Graphs) lend(n int) (Buffer, error) {
	if n == 0 {
		return Buffer{}, nil
	}
	b, err := g.d.Alloc(n)
	if err != nil {
		return Buffer{}, err
	}
	g.lent = append(g.lent, b)
	return b, nil
}

// claim takes the buffer that holds b (b itself, or a value packed with others in it, as Unpack's parts
// are) out of what was lent since the last Release, and returns it: the caller frees it then. Its slot
// stays, empty, so that Mark's positions hold.
func (g *Graphs) claim(b Buffer) (Buffer, bool) {
	for i := len(g.lent) - 1; i >= 0; i-- { // a graph's gradients are among its last values
		if l := g.lent[i]; b.n > 0 && within(b, l) {
			g.lent[i] = Buffer{}
			return l, true
		}
	}
	return Buffer{}, false
}

// within reports whether b's values lie in block's.
func within(b, block Buffer) bool {
	return block.n > 0 && b.ptr >= block.ptr && b.ptr+cu.DevicePtr(4*b.n) <= block.ptr+cu.DevicePtr(4*block.n)
}

// overlaps reports whether a and b share a value.
func overlaps(a, b Buffer) bool {
	return a.n > 0 && b.n > 0 && a.ptr < b.ptr+cu.DevicePtr(4*b.n) && b.ptr < a.ptr+cu.DevicePtr(4*a.n)
}

// output lends a buffer for a value of the given shape and wraps it.
func (g *Graphs) output(shape ...int) (Buffer, *tensor.Dense, error) {
	n := tensor.Shape(shape).TotalSize()
	b, err := g.lend(n)
	if err != nil {
		return Buffer{}, nil, err
	}
	return b, g.value(b, shape...), nil
}

// value wraps b as a graph value of the given shape.
func (g *Graphs) value(b Buffer, shape ...int) *tensor.Dense {
	return tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(shape...), tensor.WithEngine(engine{g}),
		tensor.FromMemory(uintptr(b.ptr), uintptr(4*b.n)))
}

// Uintptr and MemSize make a Buffer a tensor.Memory.
func (b Buffer) Uintptr() uintptr { return uintptr(b.ptr) }
func (b Buffer) MemSize() uintptr { return uintptr(4 * b.n) }

// buffer is the device buffer of a graph value.
func buffer(v G.Value) (Buffer, error) {
	t, ok := v.(*tensor.Dense)
	if !ok || t.Dtype() != tensor.Float32 {
		return Buffer{}, fmt.Errorf("gpu: a %T of %v is not a float32 tensor", v, v.Dtype())
	}
	if _, ok := t.Engine().(engine); !ok {
		return Buffer{}, errors.New("gpu: a tensor in host memory where the device's was expected")
	}
	n := t.Shape().TotalSize()
	if n == 0 {
		return Buffer{}, nil
	}
	return Buffer{ptr: cu.DevicePtr(t.Uintptr()), n: n}, nil
}

// buffers are the device buffers of graph values.
func buffers(in []G.Value) ([]Buffer, error) {
	out := make([]Buffer, len(in))
	for i, v := range in {
		var err error
		if out[i], err = buffer(v); err != nil {
			return nil, fmt.Errorf("input %d: %w", i, err)
		}
	}
	return out, nil
}

// engine is the tensor engine of device values: Gorgonia's own operations in a graph reach the device
// through it. Of those, the model's graphs hold only the sum of a node's gradient contributions (Add).
type engine struct{ g *Graphs }

func (engine) AllocAccessible() bool { return false }
func (e engine) Alloc(size int64) (tensor.Memory, error) {
	return e.g.lend(int(size / 4))
}
func (engine) Free(tensor.Memory, int64) error { return nil } // the arena takes everything back at Release
func (engine) Memset(tensor.Memory, any) error { return errors.New("gpu: Memset of a device value") }
func (engine) Memclr(tensor.Memory)            {}
func (engine) Memcpy(_, _ tensor.Memory) error { return errors.New("gpu: Memcpy of a device value") }
func (engine) Accessible(tensor.Memory) (tensor.Memory, error) {
	return nil, errors.New("gpu: a device value is not accessible from the host")
}
func (engine) WorksWith(tensor.DataOrder) bool { return true }

// Add is a + b in a new value. The machine may offer a value to reuse, or a when a's last read is this
// sum (tensor.Add's opts): neither is taken, as the value may be freed already, or be freed after this
// read while the sum lives on (ops.PlanReleases frees values by their reads, not by their memory).
func (e engine) Add(a, b tensor.Tensor, opts ...tensor.FuncOpt) (tensor.Tensor, error) {
	x, err := buffer(a)
	var y Buffer
	if err == nil {
		y, err = buffer(b)
	}
	if err == nil {
		err = errors.Join(e.g.live(a), e.g.live(b))
	}
	if err != nil {
		return nil, err
	}
	if x.n != y.n {
		return nil, fmt.Errorf("gpu: Add of %v and %v", a.Shape(), b.Shape())
	}
	if fo := tensor.ParseFuncOpts(opts...); fo.Incr() != nil {
		return nil, errors.New("gpu: Add with an increment is not supported")
	}
	z, out, err := e.g.output(a.Shape()...)
	if err == nil {
		err = e.g.d.copyWithin(z, x)
	}
	if err != nil {
		return nil, err
	}
	return out, e.g.d.AddTo(z, y)
}

func (engine) AddScalar(tensor.Tensor, any, bool, ...tensor.FuncOpt) (tensor.Tensor, error) {
	return nil, errors.New("gpu: AddScalar of a device value")
}

// bf16Copy is a weight's bfloat16 copy: its bits, and whether they are the weight's values now.
type bf16Copy struct {
	bits  Buffer
	fresh bool
}

// bf16Of returns the values of b rounded to bfloat16, as their bits (half.RoundToBF16): for a weight, its
// copy, rounded again only after the weight changed (staleBF16), so that every product of a step reads
// one copy; for any other value, a temporary copy that done frees.
func (g *Graphs) bf16Of(b Buffer) (bits Buffer, done func(), err error) {
	if !g.isWeight[b.ptr] {
		if bits, err = g.d.narrowBF16(Buffer{}, b); err != nil {
			return Buffer{}, nil, err
		}
		return bits, func() { g.d.Free(bits) }, nil
	}
	c := g.bf16[b.ptr]
	if !c.fresh {
		if c.bits, err = g.d.narrowBF16(c.bits, b); err != nil {
			return Buffer{}, nil, err
		}
		g.bf16[b.ptr] = bf16Copy{bits: c.bits, fresh: true}
	}
	return c.bits, func() {}, nil
}

// staleBF16 notes that the weights changed (an optimizer step): each bfloat16 copy is rounded again at its
// next use.
func (g *Graphs) staleBF16() {
	for ptr, c := range g.bf16 {
		g.bf16[ptr] = bf16Copy{bits: c.bits}
	}
}
