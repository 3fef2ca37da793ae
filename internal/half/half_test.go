package half

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// TestWidenEveryValue widens all 65536 patterns of both formats and checks each against an independent
// conversion: x448/float16's for float16, the float32 whose upper half the pattern is for bfloat16 (NaNs
// compared as NaNs).
func TestWidenEveryValue(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	for _, k := range []Kind{Float16, BFloat16} {
		dst := make([]float32, len(src))
		k.Widen(dst, src)
		for i, b := range src {
			want := math.Float32frombits(uint32(b) << 16)
			if k == Float16 {
				want = float16.Frombits(b).Float32()
			}
			if f := float64(want); k.Finite(b) != !(math.IsNaN(f) || math.IsInf(f, 0)) {
				t.Fatalf("%v %#04x (%v): Finite = %v", k, b, want, k.Finite(b))
			}
			for _, got := range []float32{dst[i], k.Float32(b)} {
				if !same(got, want) {
					t.Fatalf("%v %#04x: widened to %v, want %v", k, b, got, want)
				}
			}
		}
	}
}

func same(a, b float32) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

// TestMatrixRow widens one row of a matrix.
func TestMatrixRow(t *testing.T) {
	m := Matrix{Kind: BFloat16, Rows: 2, Cols: 3, Bits: []uint16{0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0}}
	got := m.Row(make([]float32, 5), 1)
	if want := []float32{4, 5, 6}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("row 1 = %v, want %v", got, want)
	}
}

// TestRoundBFloat16: rounding to nearest, ties to even, against the exhaustive search over the neighbours;
// every bfloat16 value rounds to itself.
func TestRoundBFloat16(t *testing.T) {
	for _, x := range []float32{1, -1, 3.14159, 1e-30, 6.5e4, 3.3e38, -2.5e-3, 1.00390625, 1.01171875} {
		b := math.Float32bits(x)
		lo, hi := uint16(b>>16), uint16(b>>16)+1
		dlo := math.Abs(float64(x) - float64(BFloat16.Float32(lo)))
		dhi := math.Abs(float64(BFloat16.Float32(hi)) - float64(x))
		want := lo
		if dhi < dlo || dhi == dlo && lo&1 == 1 {
			want = hi
		}
		if got := BFloat16.Round(x); got != want {
			t.Errorf("Round(%v) = %#04x, want %#04x", x, got, want)
		}
	}
	for b := range 1 << 16 {
		if x := BFloat16.Float32(uint16(b)); x == x && BFloat16.Round(x) != uint16(b) {
			t.Fatalf("Round(%v) = %#04x, want its own bits %#04x", x, BFloat16.Round(x), b)
		}
	}
}

// TestRoundToBF16: RoundToBF16 gives BFloat16.Round's value for every element, with the AVX2 kernel and
// without it, at lengths around its 8 lanes, on ordinary values, ties, carries into the exponent, huge values
// and zeros, into another slice and in place.
func TestRoundToBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	special := []uint32{0x3f808000, 0x3f818000, 0x3f80ffff, 0x7f7fffff, 0x80000000, 0, 0x00018000, 0xbf818000}
	for _, fast := range []bool{true, false} {
		saved := hasAVX2
		hasAVX2 = hasAVX2 && fast
		for _, n := range []int{1, 7, 8, 9, 16, 33, 100} {
			src := make([]float32, n)
			for i := range src {
				src[i] = math.Float32frombits(r.Uint32() & 0xbfffffff) // finite
				if i%3 == 0 {
					src[i] = math.Float32frombits(special[r.IntN(len(special))])
				}
			}
			dst := make([]float32, n+2)
			RoundToBF16(dst, src)
			inPlace := append([]float32(nil), src...)
			RoundToBF16(inPlace, inPlace)
			for i, x := range src {
				want := math.Float32frombits(uint32(BFloat16.Round(x)) << 16)
				if !same(dst[i], want) || !same(inPlace[i], want) {
					t.Fatalf("fast %v, n %d: element %d (%#08x) rounds to %v and %v in place, want %v", fast, n, i, math.Float32bits(x), dst[i], inPlace[i], want)
				}
			}
			if dst[n] != 0 || dst[n+1] != 0 {
				t.Fatalf("fast %v, n %d: wrote past the end", fast, n)
			}
		}
		hasAVX2 = saved
	}
}
