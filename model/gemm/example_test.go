package gemm_test

import (
	"fmt"

	"github.com/flextrain/flextrain/model/gemm"
)

// A Linear layer's forward pass with a torch-layout weight: y = x·wᵀ.
func ExampleSgemm() {
	const rows, in, out = 2, 3, 2
	x := []float32{1, 2, 3, 4, 5, 6} // [rows, in]
	w := []float32{1, 0, 1, 0, 1, 0} // [out, in]
	y := make([]float32, rows*out)   // [rows, out]
	gemm.Sgemm(false, true, rows, out, in, 1, x, in, w, in, 0, y, out)
	fmt.Println(y)
	// Output: [4 2 10 5]
}
