//go:build gpu

package gpu

import "fmt"

// LayerNorm sets each row of y [rows, cols] to (x − mean)/√(var + eps)·w + b, as ops.LayerNorm does.
func (d *Device) LayerNorm(y, x, w, b Buffer, rows, cols int, eps float64) error {
	if x.n != rows*cols || y.n != x.n || w.n != cols || b.n != cols {
		return fmt.Errorf("gpu: LayerNorm: y %d, x %d, w %d, b %d values for [%d, %d]", y.n, x.n, w.n, b.n, rows, cols)
	}
	return d.launch("layernorm", Rows(rows), y.ptr, x.ptr, w.ptr, b.ptr, int64(cols), eps)
}

// QuickGELU applies x·σ(1.702·x) in place (ops.QuickGELU).
func (d *Device) QuickGELU(x Buffer) error {
	return d.launch("quick_gelu", Elementwise(x.n), x.ptr, int64(x.n))
}

// GELU applies the exact GELU in place (ops.GELUInPlace).
func (d *Device) GELU(x Buffer) error { return d.launch("gelu", Elementwise(x.n), x.ptr, int64(x.n)) }

// AddRowBias adds b to every row of x (ops.AddRowBias).
func (d *Device) AddRowBias(x, b Buffer) error {
	if b.n == 0 || x.n%b.n != 0 {
		return fmt.Errorf("gpu: AddRowBias: %d values are not rows of %d", x.n, b.n)
	}
	return d.launch("add_bias", Elementwise(x.n), x.ptr, b.ptr, int64(x.n), int64(b.n))
}

// AddTo sets x += y (ops.AddTo).
func (d *Device) AddTo(x, y Buffer) error {
	if err := sameLen("AddTo", x, y); err != nil {
		return err
	}
	return d.launch("add", Elementwise(x.n), x.ptr, y.ptr, int64(x.n))
}

// LinearGrad is ops.Linear's backward pass for y = x·wᵀ (x [rows, in], w [out, in]) and the output's
// gradient g [rows, out]: dx = g·w and dw = gᵀ·x, either skipped when its buffer is empty (a frozen input).
func (d *Device) LinearGrad(dx, dw, x, w, g Buffer, rows, in, out int) error {
	if x.n != rows*in || w.n != out*in || g.n != rows*out || (dx.n != 0 && dx.n != x.n) || (dw.n != 0 && dw.n != w.n) {
		return fmt.Errorf("gpu: LinearGrad: dx %d, dw %d, x %d, w %d, g %d values for [%d, %d]·[%d, %d]ᵀ", dx.n, dw.n, x.n, w.n, g.n, rows, in, out, in)
	}
	if dx.n != 0 {
		if err := d.gemm(mat{b: g, ld: out}, mat{b: w, ld: in}, mat{b: dx, ld: in}, rows, in, out, 1, 0, 1); err != nil {
			return err
		}
	}
	if dw.n != 0 {
		return d.gemm(mat{b: g, ld: out, t: true}, mat{b: x, ld: in}, mat{b: dw, ld: in}, out, in, rows, 1, 0, 1)
	}
	return nil
}
