//go:build gpu

package gpu

import (
	"fmt"

	"github.com/flextrain/flextrain/model/ops"
)

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

// LayerNormGrad sets the gradients of LayerNorm's input (dx [rows, cols]) and weight (dw [cols]) from the
// output's gradient g, as ops.LayerNormOp's backward does (the bias's is ColSum); dw's columns add the rows
// in order, as the CPU does. Either is skipped when its buffer is empty (w is read for dx only).
func (d *Device) LayerNormGrad(dx, dw, x, w, g Buffer, rows, cols int, eps float64) error {
	if x.n != rows*cols || g.n != x.n || (dx.n != 0 && (dx.n != x.n || w.n != cols)) || (dw.n != 0 && dw.n != cols) {
		return fmt.Errorf("gpu: LayerNormGrad: dx %d, dw %d, x %d, w %d, g %d values for [%d, %d]", dx.n, dw.n, x.n, w.n, g.n, rows, cols)
	}
	if dw.n != 0 {
		stats, err := d.Alloc(4 * rows) // a float64 mean and inverse deviation per row
		if err != nil {
			return err
		}
		defer d.Free(stats)
		if err := d.launch("ln_rows", Rows(rows), stats.ptr, x.ptr, int64(cols), eps); err != nil {
			return err
		}
		if err := d.launch("layernorm_grad_w", Elementwise(cols), dw.ptr, x.ptr, g.ptr, stats.ptr, int64(rows), int64(cols)); err != nil {
			return err
		}
	}
	if dx.n == 0 {
		return nil
	}
	return d.launch("layernorm_grad_x", Rows(rows), dx.ptr, x.ptr, w.ptr, g.ptr, int64(cols), eps)
}

// QuickGELUGrad sets dx to QuickGELU's input gradient at x from the output's gradient g.
func (d *Device) QuickGELUGrad(dx, x, g Buffer) error {
	if err := sameLen("QuickGELUGrad", dx, x, g); err != nil {
		return err
	}
	return d.launch("quick_gelu_grad", Elementwise(x.n), dx.ptr, x.ptr, g.ptr, int64(x.n))
}

// GELUGrad sets dx to the exact GELU's input gradient at x from the output's gradient g.
func (d *Device) GELUGrad(dx, x, g Buffer) error {
	if err := sameLen("GELUGrad", dx, x, g); err != nil {
		return err
	}
	return d.launch("gelu_grad", Elementwise(x.n), dx.ptr, x.ptr, g.ptr, int64(x.n))
}

// ColSum sets y [cols] to the sum of the rows of x [rows, cols], in row order (a bias's gradient): the
// gradient of a table of one row that every row of x read (AssembleGrad).
func (d *Device) ColSum(y, x Buffer, rows, cols int) error {
	if x.n != rows*cols || y.n != cols {
		return fmt.Errorf("gpu: ColSum: y %d, x %d values for [%d, %d]", y.n, x.n, rows, cols)
	}
	src := make([]ops.Source, rows)
	for r := range src {
		src[r].Kind = ops.FromToken // row 0 of the table
	}
	return d.AssembleGrad(y, x, src, ops.FromToken, cols)
}
