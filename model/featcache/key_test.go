package featcache

import (
	"math"
	"testing"
)

func TestPixelKeyDistinguishes(t *testing.T) {
	base := []float32{0.25, -1, 3}
	for _, tc := range []struct {
		name string
		a, b Key
		same bool
	}{
		{"same pixels", PixelKey(base), PixelKey([]float32{0.25, -1, 3}), true},
		{"same two views", PixelKey(base, base), PixelKey(base, []float32{0.25, -1, 3}), true},
		{"one ulp", PixelKey(base), PixelKey([]float32{0.25, -1, math.Nextafter32(3, 4)}), false},
		{"float32 vs float64", PixelKey(base), PixelKey([]float64{0.25, -1, 3}), false},
		{"split between views", PixelKey(base[:1], base[1:]), PixelKey(base[:2], base[2:]), false},
		{"empty view added", PixelKey(base), PixelKey(base, nil), false},
		{"order of views", PixelKey(base, base[:1]), PixelKey(base[:1], base), false},
		{"zero sign", PixelKey([]float64{0}), PixelKey([]float64{math.Copysign(0, -1)}), false},
	} {
		if got := tc.a == tc.b; got != tc.same {
			t.Errorf("%s: keys equal = %v; want %v", tc.name, got, tc.same)
		}
	}
}

// TestPixelKeyNamedType: a named float type (the model's ops.Float allows ~float32) hashes like its
// underlying type.
func TestPixelKeyNamedType(t *testing.T) {
	type f32 float32
	if got, want := PixelKey([]f32{1, 2}), PixelKey([]float32{1, 2}); got != want {
		t.Errorf("PixelKey(named) = %s; want %s", got, want)
	}
}

func TestKeyString(t *testing.T) {
	k := Key{0xab, 0x01}
	if got, want := k.String(), "ab01"+"0000000000000000000000000000"; got != want {
		t.Errorf("String() = %q; want %q", got, want)
	}
}

func TestFingerprint(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		same bool
	}{
		{"same parts", Fingerprint([]byte("cfg"), []byte{1, 2}), Fingerprint([]byte("cfg"), []byte{1, 2}), true},
		{"moved boundary", Fingerprint([]byte("ab"), []byte("c")), Fingerprint([]byte("a"), []byte("bc")), false},
		{"extra empty part", Fingerprint([]byte("a")), Fingerprint([]byte("a"), nil), false},
		{"one weight byte", Fingerprint([]byte{0}), Fingerprint([]byte{1}), false},
	} {
		if got := tc.a == tc.b; got != tc.same {
			t.Errorf("%s: fingerprints equal = %v; want %v", tc.name, got, tc.same)
		}
	}
	fp := Fingerprint([]byte("x"))
	if len(fp) != 64 || !validName(fp, 128, true) {
		t.Errorf("Fingerprint = %q; want 64 hex digits usable as a directory name", fp)
	}
}
