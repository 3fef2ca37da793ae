package ops

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
)

// Precision is the arithmetic of matrix products: a linear layer's and its gradients' (MatMulArgs,
// HalfArgs), and FlexAttention's HR projections' (FlexPlan.Products).
type Precision uint8

const (
	// Native multiplies the operands as they are, in the graph's element type.
	Native Precision = iota
	// BF16 rounds both operands of a float32 product to bfloat16 (to nearest, ties to even) and sums the
	// products in float32: mixed-precision training's matrix products. Each product of two bfloat16 values
	// is exact in float32, so a GPU's tensor cores (cublasGemmEx, compute type 32F) give these numbers up to
	// the order of the sums.
	BF16
)

func (p Precision) String() string {
	if p == BF16 {
		return "bfloat16"
	}
	return "native"
}

// checkPrecision refuses a bfloat16 product in a graph of another type than float32.
func checkPrecision(name string, p Precision, x *G.Node) error {
	if p == BF16 && x.Dtype() != tensor.Float32 {
		return fmt.Errorf("ops: %s: bfloat16 products need float32 values, not %v", name, x.Dtype())
	}
	return nil
}

// roundInto sets dst to src rounded to bfloat16 (half.RoundToBF16), in parallel pieces; dst may be src.
func roundInto(dst, src []float32) {
	parallelRange(len(src), grain, func(lo, hi int) { half.RoundToBF16(dst[lo:hi], src[lo:hi]) })
}

// roundedCopy is a copy of x rounded to bfloat16 (float32 only), lent by m until its Release: a value both
// passes of an operation read.
func roundedCopy[T Float](m *Arena, x []T) []T {
	src := any(x).([]float32)
	dst := lend[float32](m, len(src), false)
	roundInto(dst, src)
	return any(dst).([]T)
}

// roundInPlace rounds x to bfloat16 in place (float32 only).
func roundInPlace[T Float](x []T) {
	v := any(x).([]float32)
	roundInto(v, v)
}
