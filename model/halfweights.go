package model

import (
	"fmt"
	"unsafe"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/gemm"
	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/safetensors"
)

// halfWeight is a frozen weight kept in its file's 16 bits: its values as a matrix of shape[0] rows (a
// convolution's filters flattened into columns), and its shape.
type halfWeight struct {
	m     half.Matrix
	shape []int
}

// halfKinds maps the file dtypes that can stay 16-bit to their formats.
var halfKinds = map[safetensors.DType]half.Kind{safetensors.F16: half.Float16, safetensors.BF16: half.BFloat16}

// FromTensorsHalf is FromTensors into a float32 store, except that the weights frozen picks stay in their
// file's float16 or bfloat16 when they are matrices (two dimensions or more): half the memory of float32,
// widened only where they are used (the multiplies pack them a panel at a time, gemm.SgemmHalf; embeddings
// widen the rows they look up). Such weights alias ts's bytes when those are 2-byte aligned, so a mapped
// file (safetensors.ReadFile, torchfile) costs memory only for the pages read. What trains, the vectors
// (norms, biases) and weights stored in float32 are float32 as in FromTensors. The values are the same
// either way: widening is exact, and the products are bitwise those of the widened weights.
func FromTensorsHalf(cfg Config, ts map[string]safetensors.Tensor, frozen func(name string) bool) (*Weights, error) {
	return fromTensors(cfg, F32, ts, keeps16(frozen))
}

// keeps16 is FromTensorsHalf's rule: a frozen matrix stored in float16 or bfloat16 stays so.
func keeps16(frozen func(string) bool) func(string, safetensors.Tensor) bool {
	return func(name string, t safetensors.Tensor) bool {
		_, ok := halfKinds[t.DType]
		return ok && len(t.Shape) >= 2 && frozen(name)
	}
}

// keepHalf validates a 16-bit tensor of the wanted shape and keeps it as its bits.
func keepHalf(shape []int, t safetensors.Tensor) (halfWeight, error) {
	if err := checkShape(t.Shape, shape); err != nil {
		return halfWeight{}, err
	}
	kind := halfKinds[t.DType]
	bits := halfBits(t.Data)
	if i := firstNonFinite(kind, bits); i >= 0 {
		return halfWeight{}, fmt.Errorf("element %d is %v (as %s): weights must be finite", i, kind.Float32(bits[i]), t.DType)
	}
	cols := 1
	for _, d := range shape[1:] {
		cols *= d
	}
	return halfWeight{m: half.Matrix{Kind: kind, Rows: shape[0], Cols: cols, Bits: bits}, shape: append([]int(nil), shape...)}, nil
}

// halfBits views little-endian 16-bit data as uint16s, without a copy when it is 2-byte aligned (this
// package builds for little-endian machines only, as gemm's kernels and the safetensors format assume).
func halfBits(data []byte) []uint16 {
	n := len(data) / 2
	if n == 0 {
		return []uint16{}
	}
	if uintptr(unsafe.Pointer(&data[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&data[0])), n)
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = uint16(data[2*i]) | uint16(data[2*i+1])<<8
	}
	return out
}

// firstNonFinite is the index of the first NaN or Inf among bits, or −1.
func firstNonFinite(kind half.Kind, bits []uint16) int {
	for i, b := range bits {
		if !kind.Finite(b) {
			return i
		}
	}
	return -1
}

// Half returns the weight called name as a 16-bit matrix when the store keeps it so (FromTensorsHalf).
func (w *Weights) Half(name string) (half.Matrix, bool) {
	h, ok := w.half[name]
	return h.m, ok
}

// HalfBytes is the memory of the weights kept in 16 bits (bits that two weights share counted once).
func (w *Weights) HalfBytes() int64 {
	var n int64
	seen := map[*uint16]bool{}
	for _, h := range w.half {
		if p := unsafe.SliceData(h.m.Bits); !seen[p] {
			seen[p] = true
			n += 2 * int64(len(h.m.Bits))
		}
	}
	return n
}

// Stored is the weight called name as the store holds it: a 16-bit weight as its F16 or BF16 bits (aliased,
// not copied: do not modify them), any other as Tensor gives it. Writers that narrow to 16 bits anyway
// (exports) take it, so that no weight is widened on the way out.
func (w *Weights) Stored(name string) safetensors.Tensor {
	h, ok := w.half[name]
	if !ok {
		return w.Tensor(name)
	}
	dt := safetensors.F16
	if h.m.Kind == half.BFloat16 {
		dt = safetensors.BF16
	}
	data := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(h.m.Bits))), 2*len(h.m.Bits))
	return safetensors.Tensor{DType: dt, Shape: append([]int(nil), h.shape...), Data: data}
}

// StoredTensors is Stored for every weight: Tensors without widening what is kept in 16 bits.
func (w *Weights) StoredTensors() map[string]safetensors.Tensor {
	out := map[string]safetensors.Tensor{}
	for _, name := range w.Names() {
		out[name] = w.Stored(name)
	}
	return out
}

// widenedTensor is a 16-bit weight widened to a float32 tensor (a copy).
func (h halfWeight) widenedTensor() safetensors.Tensor {
	v := make([]float32, len(h.m.Bits))
	h.m.Kind.Widen(v, h.m.Bits)
	return safetensors.FromFloat32(h.shape, v)
}

// params gives the code that runs the frozen parts directly (the tower, the projector, the decoder's row
// runs) the weights of w in element type T, whatever precision each is kept in, and multiplies by them in
// products' precision (ops.BF16: the operands rounded as the multiply packs them, as the graph's products).
type params[T ops.Float] struct {
	w        *Weights
	products ops.Precision
}

// vec is the weight called name as a slice: the store's own (do not modify it), or a widened copy of a
// 16-bit one. Used for vectors and small tables; matrices go through mulNT and row.
func (p params[T]) vec(name string) []T {
	if h, ok := p.w.half[name]; ok {
		v := make([]float32, len(h.m.Bits))
		h.m.Kind.Widen(v, h.m.Bits)
		return any(v).([]T)
	}
	return p.w.Get(name).Data().([]T)
}

// mulNT sets y = x·Wᵀ for x [rows, in] and the weight W [out, in] called name (gemm.SgemmHalf when W is
// 16-bit: the same bits as on the widened W), in p's precision.
func (p params[T]) mulNT(y, x []T, name string, rows int) {
	h, ok := p.w.half[name]
	bf16 := p.products == ops.BF16
	switch {
	case !ok:
		d := p.w.Get(name)
		out, in := d.Shape()[0], d.Shape().TotalSize()/d.Shape()[0]
		ops.MatMulNTIn(p.products, y, x, d.Data().([]T), rows, in, out)
	case rows == 0:
	case bf16 && h.m.Kind == half.BFloat16: // x rounded as gemm packs it
		gemm.SgemmHalfBF16(false, true, rows, h.m.Rows, h.m.Cols, 1, any(x).([]float32), h.m.Cols, h.m.Bits, h.m.Cols, 0, any(y).([]float32), h.m.Rows)
	default:
		gemm.SgemmHalf(false, true, rows, h.m.Rows, h.m.Cols, 1, any(x).([]float32), h.m.Cols, h.m.Bits, h.m.Kind, h.m.Cols, 0, any(y).([]float32), h.m.Rows)
	}
}

// row is row i of the matrix called name (an embedding), widened into a new slice when it is 16-bit, else
// the store's own (do not modify it).
func (p params[T]) row(name string, i int) []T {
	if h, ok := p.w.half[name]; ok {
		return any(h.m.Row(make([]float32, h.m.Cols), i)).([]T)
	}
	d := p.w.Get(name)
	cols := d.Shape()[1]
	return d.Data().([]T)[i*cols : (i+1)*cols]
}

// StoredBytes is what FromTensorsHalf(cfg, ts, frozen) would hold, without building it: every weight's
// element count, and its bytes (2 a value for the frozen matrices it keeps in 16 bits, none for a derived
// k/v_proj_hd that shares its source's 16 bits, 4 for the rest).
func StoredBytes(cfg Config, ts map[string]safetensors.Tensor, frozen func(name string) bool) (elems, bytes int64) {
	keep16 := keeps16(frozen)
	for _, sp := range weightSpecs(cfg) {
		n := int64(1)
		for _, d := range sp.shape {
			n *= int64(d)
		}
		elems += n
		t, ok := ts[sp.name]
		switch {
		case ok && keep16(sp.name, t):
			bytes += 2 * n
		case !ok && keep16(sp.name, ts[sp.from]) && keep16(sp.from, ts[sp.from]):
			// shares its source's bits
		default:
			bytes += 4 * n
		}
	}
	return elems, bytes
}

// Narrow keeps every frozen matrix (two dimensions or more) that frozen picks in 16 bits of kind, rounded to
// nearest (ties to even): float32 weights are rounded, 16-bit weights of the other kind widened and rounded,
// those already of kind left as they are. It is bfloat16 training's storage of the frozen weights (`bf16:
// true`): half their memory, widened where used, as FromTensorsHalf keeps a file's. A value beyond kind's
// range (float16's 65504) is an error naming the weight, and the store is then unchanged.
func (w *Weights) Narrow(kind half.Kind, frozen func(name string) bool) error {
	if w.dtype != F32 {
		return fmt.Errorf("model: narrow to %v: the store is %v, not float32", kind, w.dtype)
	}
	out := map[string]halfWeight{}
	for _, name := range w.Names() {
		if !frozen(name) {
			continue
		}
		h, isHalf := w.half[name]
		d := w.tensors[name]
		switch {
		case isHalf && h.m.Kind == kind:
			continue
		case isHalf:
			v := make([]float32, len(h.m.Bits))
			h.m.Kind.Widen(v, h.m.Bits)
			nh, err := roundTo(kind, h.shape, v)
			if err != nil {
				return fmt.Errorf("model: narrow %s to %v: %w", name, kind, err)
			}
			out[name] = nh
		case len(d.Shape()) >= 2:
			nh, err := roundTo(kind, d.Shape(), d.Data().([]float32))
			if err != nil {
				return fmt.Errorf("model: narrow %s to %v: %w", name, kind, err)
			}
			out[name] = nh
		}
	}
	if w.half == nil {
		w.half = map[string]halfWeight{}
	}
	for name, h := range out {
		delete(w.tensors, name)
		w.half[name] = h
	}
	return nil
}

// roundTo rounds values of the given shape to kind, refusing one that overflows it.
func roundTo(kind half.Kind, shape []int, v []float32) (halfWeight, error) {
	bits := make([]uint16, len(v))
	for i, x := range v {
		bits[i] = kind.Round(x)
	}
	if i := firstNonFinite(kind, bits); i >= 0 {
		return halfWeight{}, fmt.Errorf("element %d (%v) is beyond the range of %v", i, v[i], kind)
	}
	cols := len(v) / max(shape[0], 1)
	return halfWeight{m: half.Matrix{Kind: kind, Rows: shape[0], Cols: cols, Bits: bits}, shape: append([]int(nil), shape...)}, nil
}
