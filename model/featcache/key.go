package featcache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"unsafe"
)

// Float is the element type of pixels and features: the model runs in float32 or float64.
type Float interface{ ~float32 | ~float64 }

// Key names one image by its preprocessed pixels: 128 bits of SHA-256, see PixelKey.
type Key [16]byte

// String returns the key as 32 lowercase hex digits, the form used in file names.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// PixelKey hashes the pixel tensors the model receives for one image, typically the LR view [3,S,S]
// and the HR view [3,ZS,ZS]: featcache.PixelKey(lr, hr). The key is the first 128 bits of a SHA-256
// over the element size, then each slice's length and raw bytes, so the same values in float32 and
// float64, or split differently between views, give different keys. The bytes are read in place
// (no conversion), at SHA-256 speed: 1–2 GB/s with SHA-NI (BenchmarkPixelKey), 4–8 ms for the
// 8 MB of a LLaVA-1.5 image in float32, against seconds of tower work it saves.
//
// The key covers the preprocessing (resize, normalization, padding) because it hashes its output;
// two images with equal pixels share their features, which is right: the frozen tower is a function
// of its input pixels.
func PixelKey[T Float](views ...[]T) Key {
	h := sha256.New()
	var word [8]byte
	writeUint(h, word[:], uint64(unsafe.Sizeof(T(0))))
	for _, v := range views {
		writeUint(h, word[:], uint64(len(v)))
		h.Write(bytesOf(v))
	}
	var k Key
	copy(k[:], h.Sum(nil))
	return k
}

// Fingerprint returns the hex SHA-256 of parts, each preceded by its length, so that moving a byte
// from one part to the next changes the result. Build a cache's fingerprint from everything the
// frozen features depend on besides the pixels: the vision weights' bytes (in a fixed name order)
// and the config JSON (select_layer, layer_norm_eps, zoom…), e.g.
//
//	fp := featcache.Fingerprint(cfgJSON, w1, w2, …)
//
// The dtype need not be part of it: entries of each dtype are kept apart. Hashing the 1.2 GB of a
// CLIP ViT-L/14 tower takes about a second, once per run.
func Fingerprint(parts ...[]byte) string {
	f := NewFingerprinter()
	for _, p := range parts {
		f.Add(p)
	}
	return f.Sum()
}

// Fingerprinter computes a Fingerprint a part at a time, so that the parts (the weights of a 7B model's
// front, widened) need not be in memory together.
type Fingerprinter struct{ h hash.Hash }

// NewFingerprinter starts a Fingerprint with no part.
func NewFingerprinter() *Fingerprinter {
	h := sha256.New()
	h.Write([]byte("flextrain featcache fingerprint v1\x00"))
	return &Fingerprinter{h}
}

// Add appends one part.
func (f *Fingerprinter) Add(p []byte) {
	var word [8]byte
	writeUint(f.h, word[:], uint64(len(p)))
	f.h.Write(p)
}

// Sum is the Fingerprint of the parts added.
func (f *Fingerprinter) Sum() string { return hex.EncodeToString(f.h.Sum(nil)) }

// KeyOf names a value derived from several inputs (a fingerprint, token ids, a PixelKey…) rather than from
// pixels alone: the first 128 bits of their Fingerprint.
func KeyOf(parts ...[]byte) Key {
	var k Key
	hex.Decode(k[:], []byte(Fingerprint(parts...)[:2*len(k)])) // a Fingerprint is hex
	return k
}

// writeUint feeds x to h as 8 little-endian bytes, using buf as scratch.
func writeUint(h hash.Hash, buf []byte, x uint64) {
	binary.LittleEndian.PutUint64(buf, x)
	h.Write(buf)
}

// bytesOf returns the memory of s as bytes, without copying: the native (little-endian on every
// platform this trainer runs on) representation that the cache files store.
func bytesOf[T Float](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(s[0])))
}

// sizeOf returns the element size of T in bytes: 4 for float32, 8 for float64.
func sizeOf[T Float]() int { return int(unsafe.Sizeof(T(0))) }
