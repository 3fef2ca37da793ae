//go:build gpu

package gpu

import (
	"fmt"
	"math"
)

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
func (d *Device) SumSquares(x Buffer) (float64, error) {
	g := Elementwise(x.n)
	partial, err := d.Alloc(2 * g.Blocks) // float64s: two float32 slots each
	if err != nil {
		return 0, err
	}
	defer d.Free(partial)
	if err := d.launch("sum_squares", g, partial.ptr, x.ptr, int64(x.n)); err != nil {
		return 0, err
	}
	raw := make([]float32, 2*g.Blocks)
	if err := d.Download(raw, partial); err != nil {
		return 0, err
	}
	var s float64
	for b := range g.Blocks {
		s += math.Float64frombits(uint64(math.Float32bits(raw[2*b])) | uint64(math.Float32bits(raw[2*b+1]))<<32)
	}
	return s, nil
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
