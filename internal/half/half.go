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
		return bf16(bits)
	}
	return f16(bits)
}

// bf16 widens a bfloat16: the upper half of a float32.
func bf16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// f16 widens a float16: a normal number (almost every weight) by moving its bits into place (f16Normal),
// zeros, subnormals, infinities and NaNs through x448/float16.
func f16(h uint16) float32 {
	if normal16(h) {
		return f16Normal(h)
	}
	return float16.Frombits(h).Float32()
}

// normal16 reports whether the float16 h is a normal number: its exponent neither all zeros nor all ones.
func normal16(h uint16) bool { e := h & 0x7c00; return e != 0 && e != 0x7c00 }

// f16Normal widens a normal float16: its exponent and mantissa moved into place and the exponent rebiased
// (127 − 15 = 112), a few integer operations that inline into the loops.
func f16Normal(h uint16) float32 {
	return math.Float32frombits(uint32(h&0x8000)<<16 | (uint32(h&0x7fff)<<13 + 112<<23))
}

// Widen sets dst[i] to src[i] widened, for i < len(src); dst must be at least as long.
func (k Kind) Widen(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	if k == BFloat16 {
		for i, b := range src {
			dst[i] = bf16(b)
		}
		return
	}
	done := widenF16Fast(dst, src)
	dst, src = dst[done:], src[done:]
	for i, h := range src {
		if normal16(h) { // f16, spelt out: it does not inline, and the loop stays call-free
			dst[i] = f16Normal(h)
		} else {
			dst[i] = f16(h)
		}
	}
}

// Finite reports whether the value of kind k with these bits is finite: its exponent bits not all set
// (which is Inf or NaN).
func (k Kind) Finite(bits uint16) bool {
	exp := uint16(0x7c00)
	if k == BFloat16 {
		exp = 0x7f80
	}
	return bits&exp != exp
}

// Round narrows a finite x to kind k, to nearest with ties to even. bfloat16 has float32's range, so only
// float16 can overflow: a value beyond it becomes ±Inf, which Finite reports.
func (k Kind) Round(x float32) uint16 {
	if k == BFloat16 {
		// bfloat16 is the upper half of a float32: adding 0x7fff plus the lowest kept bit carries exactly
		// when the dropped half is above one half, or equal to it with an odd kept half.
		b := math.Float32bits(x)
		return uint16((b + 0x7fff + (b>>16)&1) >> 16)
	}
	return float16.Fromfloat32(x).Bits()
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
