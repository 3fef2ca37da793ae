//go:build gpu

package gpu

import (
	"errors"
	"fmt"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/optim"
)

// Training is a training run on the device: its graphs (Graphs), and beside each trainable weight, which
// Graphs keeps, the step's gradient (or the sums of its micro-batches) and the AdamW moments. The host's
// params and optimizer are brought up to date by Sync, for a checkpoint or an evaluation.
//
// A step's gradients are the buffers in which its first micro-batch's graph left them (whole, or parts of
// a packed value), taken over from the graph rather than copied, and given back to the device's cache once
// the update has read them: the device holds one gradient per weight outside a step's backward pass, and
// in it, unless the step accumulates micro-batches, the graph's only.
type Training struct {
	*Graphs
	host   []optim.Param[float32] // the trainable weights as the host holds them, in the run's order
	params []Param                // the same on the device, made at the first Update
	grads  map[string]Buffer      // per trainable weight: the step's gradient or its micro-batches' sums; empty between steps
	blocks []Buffer               // the buffers that hold grads (taken from a graph, or made), freed with them
	group  *group                 // the ranks' GPUs summing among themselves (JoinGroup), or nil
}

// Training returns a run over the trainable weights params (their values are read when a graph or the
// first Update needs them on the device).
func (d *Device) Training(params []optim.Param[float32]) *Training {
	return &Training{Graphs: d.Graphs(), host: params, grads: map[string]Buffer{}}
}

// Accumulate takes a graph's gradients (the device's values) before the graph closes: alone, as the
// step's gradient (one micro-batch on one rank, as the host takes it: a weight the loss did not reach gets
// zeros); otherwise tokens·gradient is added to the step's sums (optim.Accumulator.Add), and a micro-batch
// without tokens adds nothing. The step's first gradients are taken where they are (own). It returns the
// error of any launch queued for the micro-batch, so that a failed micro-batch is the step's failure, not
// its update's.
func (t *Training) Accumulate(grads map[string]*tensor.Dense, tokens int, alone bool) error {
	err := t.accumulate(grads, tokens, alone)
	if err == nil {
		err = t.d.check()
	}
	return err
}

func (t *Training) accumulate(grads map[string]*tensor.Dense, tokens int, alone bool) error {
	if !alone && tokens == 0 {
		return nil
	}
	if alone || len(t.grads) == 0 {
		return t.own(grads, tokens, alone)
	}
	for _, p := range t.host {
		g := grads[p.Name]
		if g == nil {
			continue // adds nothing
		}
		src, err := t.sized(g, p)
		if err == nil {
			err = t.d.launch("accumulate", Elementwise(src.n), t.grads[p.Name].ptr, src.ptr, int64(src.n), float64(float32(tokens)))
		}
		if err != nil {
			return fmt.Errorf("gpu: gradient of %s: %w", p.Name, err)
		}
	}
	return nil
}

// own makes a graph's gradients the step's: each is taken from the graph with the buffer that holds it
// (Graphs.claim), or copied where it shares values with one taken already, a missing one zeros; unless
// alone, each is then weighted by tokens in place, bit for bit what adding it to zeroed sums gives (the
// weigh kernel).
func (t *Training) own(grads map[string]*tensor.Dense, tokens int, alone bool) error {
	t.release()
	for _, p := range t.host { // all taken before any is weighted: two weights may share a gradient's buffer
		b, err := t.take(grads[p.Name], p)
		if err != nil {
			return fmt.Errorf("gpu: gradient of %s: %w", p.Name, err)
		}
		t.grads[p.Name] = b
	}
	if alone {
		return nil
	}
	for _, p := range t.host {
		b := t.grads[p.Name]
		if err := t.d.launch("weigh", Elementwise(b.n), b.ptr, int64(b.n), float64(float32(tokens))); err != nil {
			return fmt.Errorf("gpu: gradient of %s: %w", p.Name, err)
		}
	}
	return nil
}

// take returns the step's buffer of gradient g of weight p: g's own values, in a buffer the step holds or
// takes from the graph now, unless another weight's gradient shares them (then a copy: each weight's is
// weighted and clipped in place); zeros for a nil g.
func (t *Training) take(g *tensor.Dense, p optim.Param[float32]) (Buffer, error) {
	var src Buffer
	if g != nil {
		var err error
		if src, err = t.sized(g, p); err != nil {
			return Buffer{}, err
		}
		if t.holds(src) && !t.shared(src) {
			return src, nil
		}
		if block, ok := t.claim(src); ok {
			t.blocks = append(t.blocks, block)
			return src, nil
		}
	}
	b, err := t.d.Alloc(len(p.Value))
	switch {
	case err != nil:
		return Buffer{}, err
	case g == nil:
		err = t.d.Zero(b)
	default:
		err = t.d.copyWithin(b, src)
	}
	if err != nil {
		t.d.Free(b)
		return Buffer{}, err
	}
	t.blocks = append(t.blocks, b)
	return b, nil
}

// holds reports whether a buffer the step holds already contains b.
func (t *Training) holds(b Buffer) bool {
	for _, block := range t.blocks {
		if within(b, block) {
			return true
		}
	}
	return false
}

// shared reports whether b shares values with a weight's gradient taken already.
func (t *Training) shared(b Buffer) bool {
	for _, g := range t.grads {
		if overlaps(b, g) {
			return true
		}
	}
	return false
}

// sized is the device buffer of gradient g, which must have as many values as weight p.
func (t *Training) sized(g *tensor.Dense, p optim.Param[float32]) (Buffer, error) {
	src, err := buffer(g)
	if err == nil && src.n != len(p.Value) {
		err = fmt.Errorf("%d values for a weight of %d", src.n, len(p.Value))
	}
	return src, err
}

// Update ends the step: the sums' token-weighted mean over tokens (unless the gradient came alone), then
// AdamWStep (clipping to maxNorm, AdamW with lr at o's next step), and waits for the device, so that a
// step's time on the host's clock is its time on the device (the device's own, from the step's first
// operation, goes to Usage.StepTime). It returns the norm before clipping; one that
// is not finite changes no weight and no moment and is an error wrapping optim.ErrNonFinite. The step's
// gradients go back to the device's cache (release).
func (t *Training) Update(o *optim.AdamW[float32], lr, maxNorm float64, tokens int, alone bool) (float64, error) {
	defer t.release()
	if err := t.prepare(o); err != nil {
		return 0, err
	}
	for i, p := range t.params {
		g, ok := t.grads[p.Name]
		if !ok {
			return 0, fmt.Errorf("gpu: update: no gradient of %s this step", p.Name)
		}
		t.params[i].Grad = g
	}
	if !alone {
		if tokens <= 0 {
			return 0, errors.New("gpu: update: no supervised tokens in any micro-batch")
		}
		for _, p := range t.params {
			if err := t.d.launch("divide", Elementwise(p.Grad.n), p.Grad.ptr, int64(p.Grad.n), float64(float32(tokens))); err != nil {
				return 0, err
			}
		}
	}
	norm, err := t.d.AdamWStep(o, t.params, lr, maxNorm)
	t.staleBF16()
	if serr := t.d.endStep(); err == nil { // waits for the device
		err = serr
	}
	return norm, err
}

// Reduce sums the step's gradient sums over several ranks: among the GPUs of the run's group (JoinGroup),
// or through the host: they come down into one flat buffer in parameter order, sum adds every rank's into
// it (an all-reduce through the host's engine, MPI), and they go back up. A rank whose micro-batches
// supervised nothing contributes zeros. tokens is the ranks' total, which Update divides by.
func (t *Training) Reduce(tokens int, sum func([]float32) error) error {
	bufs, err := t.sums()
	if err == nil && t.group != nil { // among the group's GPUs: the sums stay on the devices
		err = t.sumInGroup(bufs)
	} else if err == nil {
		err = t.sumOnHost(bufs, sum)
	}
	return err
}

// sums are the step's gradient sums, one per trainable weight in parameter order: zeros when no
// micro-batch added to them (a rank whose micro-batches supervised nothing contributes zeros).
func (t *Training) sums() ([]Buffer, error) {
	if len(t.grads) == 0 {
		if err := t.own(nil, 0, true); err != nil {
			return nil, err
		}
	}
	bufs := make([]Buffer, len(t.host))
	for i, p := range t.host {
		bufs[i] = t.grads[p.Name]
	}
	return bufs, nil
}

// sumOnHost brings bufs down into one flat buffer, sums it with the other ranks' through sum, and puts the
// result back up.
func (t *Training) sumOnHost(bufs []Buffer, sum func([]float32) error) error {
	n := 0
	for _, b := range bufs {
		n += b.n
	}
	flat := make([]float32, n)
	off := 0
	for _, b := range bufs {
		if err := t.d.Download(flat[off:off+b.n], b); err != nil {
			return err
		}
		off += b.n
	}
	if err := sum(flat); err != nil {
		return err
	}
	off = 0
	for _, b := range bufs {
		if err := t.d.Upload(b, flat[off:off+b.n]); err != nil {
			return err
		}
		off += b.n
	}
	return nil
}

// Discard forgets a skipped step: its gradients (release), and its time on the device, which no update
// ends.
func (t *Training) Discard() {
	t.release()
	t.d.abandonStep()
}

// release gives the step's gradient buffers back to the device's cache, for the next step's graphs.
func (t *Training) release() {
	for _, b := range t.blocks {
		t.d.Free(b)
	}
	clear(t.grads)
	t.blocks = t.blocks[:0]
}

// prepare makes the device's params at the first update: each weight (as Graphs holds it, or uploaded
// now if no graph has used it) and its moments, zeros or the host optimizer's (a resumed run's); each
// update sets their gradients.
func (t *Training) prepare(o *optim.AdamW[float32]) error {
	if t.params != nil {
		return nil
	}
	for _, p := range t.host {
		v, err := t.Weight(p.Name, tensor.New(tensor.WithShape(p.Shape...), tensor.WithBacking(p.Value)))
		if err != nil {
			return err
		}
		value, _ := buffer(v)
		m, err := t.moment(o.M[p.Name], len(p.Value))
		if err != nil {
			return err
		}
		vv, err := t.moment(o.V[p.Name], len(p.Value))
		if err != nil {
			return err
		}
		t.params = append(t.params, Param{Name: p.Name, Shape: p.Shape, Value: value, M: m, V: vv})
	}
	return nil
}

// moment puts an AdamW moment on the device: host's values, or zeros when there are none yet.
func (t *Training) moment(host []float32, n int) (Buffer, error) {
	if host != nil {
		if len(host) != n {
			return Buffer{}, fmt.Errorf("gpu: a moment of %d values for a weight of %d", len(host), n)
		}
		return newBuffer(t.d, host)
	}
	b, err := t.d.Alloc(n)
	if err == nil {
		err = t.d.Zero(b)
	}
	return b, err
}

// Sync copies the trainable weights into the host's params and, once AdamW has run, the moments into o
// (Moments): the host then holds the run's state, as a CPU run would.
func (t *Training) Sync(o *optim.AdamW[float32]) error {
	for _, p := range t.host {
		if _, ok := t.weights[p.Name]; !ok {
			continue // never on the device: the host's is current
		}
		if err := t.ReadWeight(p.Name, p.Value); err != nil {
			return err
		}
	}
	if t.params == nil {
		return nil
	}
	return t.d.Moments(o, t.params)
}

// Close leaves the group, frees the gradients, the moments, the arena and the weights; the device stays
// open.
func (t *Training) Close() error {
	errs := []error{t.leaveGroup()}
	t.release()
	for _, p := range t.params {
		errs = append(errs, t.d.Free(p.M), t.d.Free(p.V))
	}
	t.params = nil
	return errors.Join(append(errs, t.Graphs.Close())...)
}
