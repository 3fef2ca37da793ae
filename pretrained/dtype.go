package pretrained

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/safetensors"
)

// dtypes maps WriteOptions.DType to the safetensors dtype and torch_dtype written.
var dtypes = map[string]safetensors.DType{"float32": safetensors.F32, "float16": safetensors.F16, "bfloat16": safetensors.BF16}

// encode converts a weight to dtype dt with rows zero rows of width row appended (the llava-hf vocabulary's
// new rows), rounding each value to the nearest value of dt, ties to even. A float32 weight kept in float32
// keeps its bytes. F64 weights are rounded to float32 first. A value that is not finite, or beyond float16's
// range, is an error naming the element.
func encode(t safetensors.Tensor, dt safetensors.DType, rows, row int) ([]byte, error) {
	if t.DType == dt && rows == 0 {
		return t.Data, nil
	}
	v, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	v = append(v, make([]float32, rows*row)...)
	out := make([]byte, len(v)*dt.Size())
	for i, x := range v {
		if err := put(out, i, x, dt); err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return out, nil
}

// put writes x as element i of out, in dtype dt.
func put(out []byte, i int, x float32, dt safetensors.DType) error {
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return fmt.Errorf("%v is not finite", x)
	}
	kind := half.Float16
	switch dt {
	case safetensors.F32:
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
		return nil
	case safetensors.BF16:
		kind = half.BFloat16
	}
	bits := kind.Round(x)
	if !kind.Finite(bits) {
		return fmt.Errorf("%v is beyond the range of %s", x, dt)
	}
	binary.LittleEndian.PutUint16(out[2*i:], bits)
	return nil
}
