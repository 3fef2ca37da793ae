package safetensors_test

import (
	"bytes"
	"fmt"

	"github.com/flextrain/flextrain/safetensors"
)

// Example writes one F32 tensor and reads it back.
func Example() {
	f := &safetensors.File{
		Metadata: map[string]string{"format": "pt"},
		Tensors:  map[string]safetensors.Tensor{"w": safetensors.FromFloat32([]int{2, 2}, []float32{1, 2, 3, 4})},
	}
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, f); err != nil {
		fmt.Println(err)
		return
	}
	back, err := safetensors.Parse(buf.Bytes())
	if err != nil {
		fmt.Println(err)
		return
	}
	w := back.Tensors["w"]
	v, _ := w.Float64s()
	fmt.Println(back.Names(), w.DType, w.Shape, v, back.Metadata["format"])
	// Output: [w] F32 [2 2] [1 2 3 4] pt
}
