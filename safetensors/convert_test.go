package safetensors

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// halfs packs 16-bit patterns little-endian.
func halfs(bits ...uint16) []byte {
	var b []byte
	for _, u := range bits {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

func TestHalfConversions(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		dtype DType
		bits  []uint16
		want  []float64
	}{
		// F16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
		{F16, []uint16{0x3C00, 0xC000, 0x7C00, 0xFC00, 0x0001, 0x03FF, 0x7BFF, 0x3555, 0x8000},
			[]float64{1, -2, inf, -inf, math.Ldexp(1, -24), math.Ldexp(1023, -24), 65504, math.Ldexp(0x400|0x155, -12), math.Copysign(0, -1)}},
		// BF16: 1 sign, 8 exponent (bias 127), 7 mantissa bits.
		{BF16, []uint16{0x3F80, 0xC000, 0x7F80, 0xFF80, 0x0001, 0x4049, 0x7F7F},
			[]float64{1, -2, inf, -inf, math.Ldexp(1, -133), 3.140625, math.Ldexp(0xFF, 120)}},
	}
	for _, c := range cases {
		tn := Tensor{DType: c.dtype, Shape: []int{len(c.bits)}, Data: halfs(c.bits...)}
		got64, err := tn.Float64s()
		if err != nil {
			t.Fatalf("%s Float64s: %v", c.dtype, err)
		}
		got32, err := tn.Float32s()
		if err != nil {
			t.Fatalf("%s Float32s: %v", c.dtype, err)
		}
		for i, w := range c.want {
			if got64[i] != w || math.Signbit(got64[i]) != math.Signbit(w) || float64(got32[i]) != w {
				t.Errorf("%s %#04x: got %g (float64), %g (float32); want %g", c.dtype, c.bits[i], got64[i], got32[i], w)
			}
		}
	}
	nan, _ := Tensor{DType: F16, Shape: []int{2}, Data: halfs(0x7E00, 0x7FC0)}.Float64s()
	if !math.IsNaN(nan[0]) {
		t.Errorf("F16 0x7E00: got %g; want NaN", nan[0])
	}
}

func TestWideConversions(t *testing.T) {
	f64 := FromFloat64([]int{3}, []float64{0.1, -1e300, math.SmallestNonzeroFloat64})
	got32, err := f64.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{0.1, float32(math.Inf(-1)), 0}; !reflect.DeepEqual(got32, want) {
		t.Errorf("F64 to float32: got %v; want %v", got32, want)
	}
	f32 := FromFloat32([]int{2}, []float32{0.1, -3})
	got64, _ := f32.Float64s()
	if want := []float64{float64(float32(0.1)), -3}; !reflect.DeepEqual(got64, want) {
		t.Errorf("F32 to float64: got %v; want %v", got64, want)
	}
	back, _ := f64.Float64s()
	if want := []float64{0.1, -1e300, math.SmallestNonzeroFloat64}; !reflect.DeepEqual(back, want) {
		t.Errorf("F64 to float64: got %v; want %v", back, want)
	}
}

func TestIntConversions(t *testing.T) {
	i32 := Tensor{DType: I32, Shape: []int{2}, Data: []byte{0xFB, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0}}
	cases := []struct {
		t    Tensor
		want []int64
	}{
		{FromInt64([]int{3}, []int64{-200, 0, math.MaxInt64}), []int64{-200, 0, math.MaxInt64}},
		{i32, []int64{-5, 7}},
		{FromUint8([]int{2}, []uint8{255, 0}), []int64{255, 0}},
		{Tensor{DType: BOOL, Shape: []int{2}, Data: []byte{1, 0}}, []int64{1, 0}},
	}
	for _, c := range cases {
		got, err := c.t.Int64s()
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s Int64s: got %v, %v; want %v", c.t.DType, got, err, c.want)
		}
	}
}

func TestConversionRejects(t *testing.T) {
	cases := []struct {
		name   string
		conv   func() error
		format bool // the error must wrap ErrFormat
		want   string
	}{
		{"float from int", func() error { _, err := FromInt64([]int{1}, []int64{1}).Float64s(); return err }, false, "cannot be converted"},
		{"int from float", func() error { _, err := FromFloat32([]int{1}, []float32{1}).Int64s(); return err }, false, "cannot be converted"},
		{"short data", func() error { _, err := FromFloat32([]int{3}, []float32{1}).Float32s(); return err }, true, "4 data bytes"},
		{"bool byte 2", func() error { _, err := Tensor{DType: BOOL, Shape: []int{1}, Data: []byte{2}}.Int64s(); return err }, true, "want 0 or 1"},
	}
	for _, c := range cases {
		err := c.conv()
		if err == nil || !strings.Contains(err.Error(), c.want) || errors.Is(err, ErrFormat) != c.format {
			t.Errorf("%s: got %v; want an error mentioning %q (ErrFormat: %v)", c.name, err, c.want, c.format)
		}
	}
}
