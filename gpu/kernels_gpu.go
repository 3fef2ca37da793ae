//go:build gpu

package gpu

import "fmt"

// f64 widens a float32 constant for a kernel, which narrows it back exactly (every parameter is 8 bytes).
func f64(x float32) float64 { return float64(x) }

// AdamW updates w, m and v in place from the gradient g, element for element as optim.AdamW does.
func (d *Device) AdamW(w, g, m, v Buffer, k AdamWConsts) error {
	if g.n != w.n || m.n != w.n || v.n != w.n {
		return fmt.Errorf("gpu: AdamW: w %d, g %d, m %d, v %d values", w.n, g.n, m.n, v.n)
	}
	return d.launch("adamw", Elementwise(w.n), w.ptr, g.ptr, m.ptr, v.ptr, int64(w.n), f64(k.B1), f64(k.C1), f64(k.B2),
		f64(k.C2), f64(k.D1), f64(k.D2), f64(k.Eps), f64(k.LR), f64(k.WD))
}

// Scale multiplies x by s in place.
func (d *Device) Scale(x Buffer, s float32) error {
	return d.launch("scale", Elementwise(x.n), x.ptr, int64(x.n), f64(s))
}

// SumSquares is Σ x², the squared norm of a gradient, in float64: each block's sum on the device, the
// blocks' sums added here.
func (d *Device) SumSquares(x Buffer) (float64, error) { return d.sumSquaresAll([]Buffer{x}) }

// sumSquaresAll is Σ over xs of SumSquares(x), each x's sum added in turn: every block's sum computed on
// the device into one buffer that comes down once, whatever the number of gradients.
func (d *Device) sumSquaresAll(xs []Buffer) (float64, error) {
	offs := make([]int, len(xs)+1) // x's blocks' sums are partial[offs[i]:offs[i+1]]
	for i, x := range xs {
		offs[i+1] = offs[i] + Elementwise(x.n).Blocks
	}
	partial, err := d.Alloc(2 * max(offs[len(xs)], 1)) // float64s: two float32 slots each
	if err != nil {
		return 0, err
	}
	defer d.Free(partial)
	for i, x := range xs {
		if err := d.launch("sum_squares", Elementwise(x.n), partial.at(2*offs[i]), x.ptr, int64(x.n)); err != nil {
			return 0, err
		}
	}
	parts, err := readBuffer[float64](d, partial)
	if err != nil {
		return 0, err
	}
	var sum float64
	for i := range xs {
		var s float64
		for _, p := range parts[offs[i]:offs[i+1]] { // in block order
			s += p
		}
		sum += s
	}
	return sum, nil
}

// RMSNorm sets each row of y [rows, cols] to x·s·w, s = 1/√(mean(x²) + eps): ops.RMSNorm's forward.
func (d *Device) RMSNorm(y, x, w Buffer, rows, cols int, eps float64) error {
	if x.n != rows*cols || y.n != x.n || w.n != cols {
		return fmt.Errorf("gpu: RMSNorm: x %d, y %d, w %d values for [%d, %d]", x.n, y.n, w.n, rows, cols)
	}
	return d.launch("rmsnorm", Rows(rows), y.ptr, x.ptr, w.ptr, int64(cols), eps)
}

// SwiGLU sets y = a·σ(a)·b element-wise: ops.SwiGLU's forward.
func (d *Device) SwiGLU(y, a, b Buffer) error {
	if a.n != y.n || b.n != y.n {
		return fmt.Errorf("gpu: SwiGLU: y %d, a %d, b %d values", y.n, a.n, b.n)
	}
	return d.launch("swiglu", Elementwise(y.n), y.ptr, a.ptr, b.ptr, int64(y.n))
}

// SwiGLUGrad sets the gradients of SwiGLU's inputs a (the gate) and b from the output's gradient g.
func (d *Device) SwiGLUGrad(dgate, dup, a, b, g Buffer) error {
	if err := sameLen("SwiGLUGrad", dgate, dup, a, b, g); err != nil {
		return err
	}
	return d.launch("swiglu_grad", Elementwise(a.n), dgate.ptr, dup.ptr, a.ptr, b.ptr, g.ptr, int64(a.n))
}

// RMSNormGrad sets the gradients of RMSNorm's input (dx [rows, cols]) and weight (dw [cols]) from the
// output's gradient g, as ops.RMSNorm's backward does; dw's columns add the rows in order, as the CPU does.
// Either is skipped when its buffer is empty (w is read for dx only).
func (d *Device) RMSNormGrad(dx, dw, x, w, g Buffer, rows, cols int, eps float64) error {
	if x.n != rows*cols || g.n != x.n || (dx.n != 0 && (dx.n != x.n || w.n != cols)) || (dw.n != 0 && dw.n != cols) {
		return fmt.Errorf("gpu: RMSNormGrad: dx %d, dw %d, x %d, w %d, g %d values for [%d, %d]", dx.n, dw.n, x.n, w.n, g.n, rows, cols)
	}
	s, err := d.Alloc(2 * rows) // a float64 per row
	if err != nil {
		return err
	}
	defer d.Free(s)
	if err := d.launch("rms_rows", Rows(rows), s.ptr, x.ptr, int64(cols), eps); err != nil {
		return err
	}
	if dw.n != 0 {
		if err := d.launch("rmsnorm_grad_w", Elementwise(cols), dw.ptr, x.ptr, g.ptr, s.ptr, int64(rows), int64(cols)); err != nil {
			return err
		}
	}
	if dx.n == 0 {
		return nil
	}
	return d.launch("rmsnorm_grad_x", Rows(rows), dx.ptr, x.ptr, w.ptr, g.ptr, int64(cols), eps)
}

// Rope rotates every head (dh values) of x [rows, width] into y with the tables cos, sin [period, dh] (row r
// reads table row r mod period), or applies the adjoint when transpose (the backward pass): ops.Rope.
func (d *Device) Rope(y, x, cos, sin Buffer, rows, width, dh int, transpose bool) error {
	if x.n != rows*width || y.n != x.n || cos.n != sin.n || dh <= 0 || dh%2 != 0 || width%dh != 0 || cos.n%dh != 0 || cos.n == 0 {
		return fmt.Errorf("gpu: Rope: y %d, x %d, tables %d and %d values for [%d, %d] with heads of %d", y.n, x.n, cos.n, sin.n, rows, width, dh)
	}
	return d.launch("rope", Elementwise(rows*width/2), y.ptr, x.ptr, cos.ptr, sin.ptr, int64(rows), int64(width), int64(dh), int64(cos.n/dh), boolArg(transpose))
}

// Xent is a cross-entropy's forward state on the device, for its backward pass: the targets and each row's
// log-sum-exp. Free releases it.
type Xent struct {
	targets, lse Buffer
	rows, v, n   int
}

// CrossEntropy is the mean over rows with a target of −log softmax(logits[r])[target[r]] for logits [rows,
// V] (targets[r] < 0: none), as ops.CrossEntropy computes it: each row's log-sum-exp on the device, their sum
// here in row order. With no target at all the loss is 0.
func (d *Device) CrossEntropy(logits Buffer, targets []int, V int) (float64, *Xent, error) {
	rows := len(targets)
	if logits.n != rows*V || rows == 0 {
		return 0, nil, fmt.Errorf("gpu: CrossEntropy: %d logits for %d rows of %d", logits.n, rows, V)
	}
	x := &Xent{rows: rows, v: V}
	t := make([]int64, rows)
	for r, v := range targets {
		if v >= V {
			return 0, nil, fmt.Errorf("gpu: CrossEntropy: target %d outside the vocabulary of %d", v, V)
		}
		t[r] = -1
		if v >= 0 {
			t[r] = int64(v)
			x.n++
		}
	}
	var err error
	if x.targets, err = newBuffer(d, t); err != nil {
		return 0, nil, err
	}
	picked, err := d.Alloc(2 * rows)
	if err == nil {
		x.lse, err = d.Alloc(2 * rows)
	}
	if err != nil {
		x.Free(d)
		return 0, nil, err
	}
	defer d.Free(picked)
	if err := d.launch("xent_lse", Rows(rows), x.lse.ptr, picked.ptr, logits.ptr, x.targets.ptr, int64(V)); err != nil {
		x.Free(d)
		return 0, nil, err
	}
	lse, err := readBuffer[float64](d, x.lse)
	var pk []float64
	if err == nil {
		pk, err = readBuffer[float64](d, picked)
	}
	if err != nil {
		x.Free(d)
		return 0, nil, err
	}
	var loss float64
	for r, v := range t {
		if v >= 0 {
			loss += lse[r] - pk[r]
		}
	}
	if x.n > 0 {
		loss /= float64(x.n)
	}
	return loss, x, nil
}

// CrossEntropyGrad sets dlogits, the gradient of the loss times the upstream g: (softmax − onehot)·g/n.
func (d *Device) CrossEntropyGrad(dlogits, logits Buffer, x *Xent, g float64) error {
	if dlogits.n != x.rows*x.v || logits.n != dlogits.n {
		return fmt.Errorf("gpu: CrossEntropyGrad: %d and %d values for [%d, %d]", dlogits.n, logits.n, x.rows, x.v)
	}
	return d.launch("xent_grad", Rows(x.rows), dlogits.ptr, logits.ptr, x.lse.ptr, x.targets.ptr, int64(x.v), int64(max(x.n, 1)), g)
}

// Free releases the state.
func (x *Xent) Free(d *Device) {
	for _, b := range []Buffer{x.targets, x.lse} {
		if b.n > 0 {
			d.Free(b)
		}
	}
}

// sameLen refuses buffers of different lengths.
func sameLen(op string, bufs ...Buffer) error {
	for _, b := range bufs[1:] {
		if b.n != bufs[0].n {
			return fmt.Errorf("gpu: %s: buffers of %d and %d values", op, bufs[0].n, b.n)
		}
	}
	return nil
}

// narrowBF16 rounds the values of src to bfloat16 into dst (their bits), or into a new buffer when dst is empty.
func (d *Device) narrowBF16(dst, src Buffer) (Buffer, error) {
	fresh := dst.n == 0
	if fresh {
		var err error
		if dst, err = d.Alloc((src.n + 1) / 2); err != nil {
			return Buffer{}, err
		}
	}
	if err := d.launch("narrow_bf16", Elementwise(src.n), dst.ptr, src.ptr, int64(src.n)); err != nil {
		if fresh {
			d.Free(dst)
		}
		return Buffer{}, err
	}
	return dst, nil
}

// widenBF16 sets dst to the bfloat16 values whose bits src holds (narrowBF16's), as float32.
func (d *Device) widenBF16(dst, bits Buffer) error {
	if dst.n == 0 {
		return nil
	}
	return d.launch("widen16", Elementwise(dst.n), dst.ptr, bits.ptr, int64(dst.n), boolArg(true))
}
