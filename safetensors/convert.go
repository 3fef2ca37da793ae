package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

var le = binary.LittleEndian

// Float64s decodes a floating-point tensor (F64, F32, F16, BF16) to float64, exactly.
func (t Tensor) Float64s() ([]float64, error) {
	n, err := t.elements("float64", DType.IsFloat)
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	if t.DType == F64 {
		for i := range out {
			out[i] = math.Float64frombits(le.Uint64(t.Data[8*i:]))
		}
		return out, nil
	}
	for i := range out {
		out[i] = float64(narrowAt(t.DType, t.Data, i))
	}
	return out, nil
}

// Float32s decodes a floating-point tensor (F64, F32, F16, BF16) to float32. F64 values are rounded to
// nearest; those beyond the float32 range become ±Inf, which callers that require finite values catch.
func (t Tensor) Float32s() ([]float32, error) {
	n, err := t.elements("float32", DType.IsFloat)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	if t.DType == F64 {
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(t.Data[8*i:])))
		}
		return out, nil
	}
	for i := range out {
		out[i] = narrowAt(t.DType, t.Data, i)
	}
	return out, nil
}

// narrowAt decodes element i of F32, F16 or BF16 data.
func narrowAt(d DType, data []byte, i int) float32 {
	switch d {
	case F16:
		return float16.Frombits(le.Uint16(data[2*i:])).Float32()
	case BF16:
		return BF16ToFloat32(le.Uint16(data[2*i:]))
	}
	return math.Float32frombits(le.Uint32(data[4*i:]))
}

// BF16ToFloat32 widens a bfloat16 bit pattern: bfloat16 is the upper 16 bits of a float32, so this is exact.
func BF16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// Int64s decodes an integer or boolean tensor (I64, I32, U8, BOOL) to int64. A BOOL byte other than 0 or 1
// is an error, as in the Hugging Face reader.
func (t Tensor) Int64s() ([]int64, error) {
	n, err := t.elements("int64", isInt)
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	for i := range out {
		switch t.DType {
		case I64:
			out[i] = int64(le.Uint64(t.Data[8*i:]))
		case I32:
			out[i] = int64(int32(le.Uint32(t.Data[4*i:])))
		default:
			out[i] = int64(t.Data[i])
		}
		if t.DType == BOOL && out[i] > 1 {
			return nil, formatErrorf("BOOL element %d is %d, want 0 or 1", i, out[i])
		}
	}
	return out, nil
}

func isInt(d DType) bool { return d == I64 || d == I32 || d == U8 || d == BOOL }

// elements checks t and that its dtype converts to the target type, and returns its element count.
func (t Tensor) elements(target string, ok func(DType) bool) (int, error) {
	if err := t.check(); err != nil {
		return 0, formatErrorf("%s%v to %s: %v", t.DType, t.Shape, target, err)
	}
	if !ok(t.DType) {
		return 0, fmt.Errorf("safetensors: %s%v cannot be converted to %s", t.DType, t.Shape, target)
	}
	return t.NumElements(), nil
}

// FromFloat32 encodes v as an F32 tensor of the given shape. The shape is copied; its element count should
// equal len(v): Write and the decoders refuse a tensor where it does not.
func FromFloat32(shape []int, v []float32) Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		le.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return Tensor{DType: F32, Shape: cloneShape(shape), Data: b}
}

// FromFloat64 encodes v as an F64 tensor of the given shape (see FromFloat32).
func FromFloat64(shape []int, v []float64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		le.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return Tensor{DType: F64, Shape: cloneShape(shape), Data: b}
}

// FromInt64 encodes v as an I64 tensor of the given shape (see FromFloat32).
func FromInt64(shape []int, v []int64) Tensor {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		le.PutUint64(b[8*i:], uint64(x))
	}
	return Tensor{DType: I64, Shape: cloneShape(shape), Data: b}
}

// FromUint8 encodes v as a U8 tensor of the given shape (see FromFloat32); v is copied.
func FromUint8(shape []int, v []uint8) Tensor {
	return Tensor{DType: U8, Shape: cloneShape(shape), Data: append([]byte{}, v...)}
}

// cloneShape copies a shape, keeping a scalar's as a non-nil empty slice.
func cloneShape(s []int) []int { return append([]int{}, s...) }
