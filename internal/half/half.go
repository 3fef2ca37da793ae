// Package half holds 16-bit floating-point values (IEEE float16 and bfloat16) as their bits and widens them
// to float32, exactly: every value of both formats is a float32 value.
//
// Frozen weights published in float16 or bfloat16 stay in that form in memory (half the bytes of float32)
// and are widened only where they are used, a panel at a time, by the matrix multiply (model/gemm) and the
// row lookups of the embeddings. float16 is widened through a table of its 65536 values built once from
// github.com/x448/float16's conversion (a table lookup is several times faster than the conversion's
// branches, and the multiply packs millions of values per call); bfloat16 is the upper half of a float32,
// so a shift widens it.
package half

import (
	"fmt"
	"math"
	"sync"

	"github.com/x448/float16"
)

// Kind is the format of 16-bit values.
type Kind uint8

// The formats; the zero Kind is none.
const (
	Float16  Kind = iota + 1 // IEEE 754 binary16: 5 exponent bits, 10 mantissa bits
	BFloat16                 // bfloat16: float32's 8 exponent bits, 7 mantissa bits
)

// String is the format's name as safetensors spells its dtype (F16, BF16).
func (k Kind) String() string {
	switch k {
	case Float16:
		return "F16"
	case BFloat16:
		return "BF16"
	}
	return fmt.Sprintf("half.Kind(%d)", uint8(k))
}

// Float32 widens one value of kind k.
func (k Kind) Float32(bits uint16) float32 {
	if k == BFloat16 {
		return math.Float32frombits(uint32(bits) << 16)
	}
	return f16Table()[bits]
}

// Widen sets dst[i] to src[i] widened, for i < len(src); dst must be at least as long.
func (k Kind) Widen(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	if k == BFloat16 {
		for i, b := range src {
			dst[i] = math.Float32frombits(uint32(b) << 16)
		}
		return
	}
	t := f16Table()
	for i, b := range src {
		dst[i] = t[b]
	}
}

// WidenStrided sets dst[i·stride] to src[i] widened, for i < len(src): a column of a packed panel.
func (k Kind) WidenStrided(dst []float32, stride int, src []uint16) {
	if k == BFloat16 {
		for i, b := range src {
			dst[i*stride] = math.Float32frombits(uint32(b) << 16)
		}
		return
	}
	t := f16Table()
	for i, b := range src {
		dst[i*stride] = t[b]
	}
}

// Matrix is a row-major matrix of 16-bit values: Rows×Cols values in Bits, each of format Kind.
type Matrix struct {
	Kind       Kind
	Rows, Cols int
	Bits       []uint16
}

// Row widens row i into dst (at least Cols long) and returns dst[:Cols].
func (m Matrix) Row(dst []float32, i int) []float32 {
	m.Kind.Widen(dst, m.Bits[i*m.Cols:(i+1)*m.Cols])
	return dst[:m.Cols]
}

var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = float16.Frombits(uint16(i)).Float32()
	}
	return t
})
