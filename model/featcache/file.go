package featcache

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"unsafe"

	"github.com/klauspost/compress/zstd"
)

// Every cache file holds one value (the features of one key, view and dtype):
//
//	offset  size  field
//	0       8     magic "FLEXFEAT"
//	8       2     format version, uint16 little-endian (FormatVersion)
//	10      1     byte order of the payload: 1 little-endian, 2 big-endian (the writer's native order)
//	11      1     dtype: the element size, 4 (float32) or 8 (float64)
//	12      4     reserved, zero
//	16      8     count: the number of elements, uint64 LE
//	24      8     body length: the stored payload size, uint64 LE
//	32      …     body: zstd(lanes(payload)), payload = the count elements' raw bytes
//	end-4   4     CRC-32C, uint32 LE, of the identity (fingerprint, key, view, dtype) then every byte before it
//
// lanes is a byte transpose in words of the element size (toLanes): it gathers the sign-and-exponent
// bytes of all elements, which zstd compresses, away from the low mantissa bytes, which it cannot.
// Seeding the checksum with the identity makes a file copied under another name or fingerprint
// fail like a damaged one. CRC-32C catches every burst of up to 32 flipped bits, so one bad byte is
// always caught, and runs at memory speed; the cache guards against accidents, not adversaries.
const (
	magic       = "FLEXFEAT"
	headerSize  = 32
	trailerSize = 4
)

// FormatVersion is the version of the cache file format this build writes and reads.
const FormatVersion = 1

// MaxValueBytes caps one value (1 GiB of features, far above the [Z²·n, Cv] HR features of any
// LLaVA-scale tower): Put refuses more and a file header claiming more is corrupt.
const MaxValueBytes = 1 << 30

// maxFileSize is the largest file of a payload of n bytes (of MaxValueBytes, the most any file holds, when
// n < 0 or above it): the header, zstd's worst case for n bytes with room to spare (the reference bound is
// n + n/256 + 64) and the trailer. encodeFile sizes its buffer with it and readFile reads no more.
func maxFileSize(n int) int64 {
	if n < 0 || n > MaxValueBytes {
		n = MaxValueBytes
	}
	return int64(headerSize + n + n/128 + 1024 + trailerSize)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// nativeOrder is the header byte of this machine's byte order.
var nativeOrder = func() byte {
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) == 1 {
		return 1
	}
	return 2
}()

// identity is what a file's checksum is seeded with: the facts its path encodes.
func identity(fp string, id entryID) []byte {
	b := make([]byte, 0, len(fp)+len(id.key)+len(id.view)+3)
	b = append(b, fp...)
	b = append(b, 0)
	b = append(b, id.key[:]...)
	b = append(b, id.view...)
	return append(b, 0, byte(id.dtype))
}

// encodeFile builds the file of raw (count elements of id.dtype) for fingerprint fp.
func encodeFile(fp string, id entryID, raw []byte, enc *zstd.Encoder) []byte {
	out := make([]byte, headerSize, maxFileSize(len(raw)))
	out = enc.EncodeAll(toLanes(raw, int(id.dtype)), out)
	copy(out, magic)
	binary.LittleEndian.PutUint16(out[8:], FormatVersion)
	out[10], out[11] = nativeOrder, byte(id.dtype)
	binary.LittleEndian.PutUint64(out[16:], uint64(len(raw)/int(id.dtype)))
	binary.LittleEndian.PutUint64(out[24:], uint64(len(out)-headerSize))
	sum := crc32.Update(crc32.Checksum(identity(fp, id), castagnoli), castagnoli, out)
	return binary.LittleEndian.AppendUint32(out, sum)
}

// decodeFile verifies the file b that should hold id under fingerprint fp and returns its payload.
// Errors wrap errVersion (magic, version, byte order) or errCorrupt (anything else); the caller adds
// the path. dec must have been made with zstd.WithDecodeAllCapLimit: the payload is decoded into a
// buffer of exactly the size the verified header gives, and a frame that would grow past it fails.
func decodeFile(b []byte, fp string, id entryID, dec *zstd.Decoder) ([]byte, error) {
	if err := checkHead(b); err != nil {
		return nil, err
	}
	end := len(b) - trailerSize
	sum := crc32.Update(crc32.Checksum(identity(fp, id), castagnoli), castagnoli, b[:end])
	if got := binary.LittleEndian.Uint32(b[end:]); got != sum {
		return nil, fmt.Errorf("%w: CRC-32C %08x, want %08x (damaged, truncated or misplaced)", errCorrupt, got, sum)
	}
	rawLen, err := checkLengths(b, id)
	if err != nil {
		return nil, err
	}
	lanes, err := dec.DecodeAll(b[headerSize:end], make([]byte, 0, rawLen))
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %w", errCorrupt, err)
	}
	if len(lanes) != rawLen {
		return nil, fmt.Errorf("%w: payload decompresses to %d bytes, header gives %d", errCorrupt, len(lanes), rawLen)
	}
	return fromLanes(lanes, int(id.dtype)), nil
}

// checkHead checks the length, magic, version and byte order: what tells whether this build can
// read the file at all.
func checkHead(b []byte) error {
	if len(b) < headerSize+trailerSize {
		return fmt.Errorf("%w: truncated: %d bytes, a file has at least %d", errCorrupt, len(b), headerSize+trailerSize)
	}
	if string(b[:8]) != magic {
		return fmt.Errorf("%w: bad magic %q, want %q", errVersion, b[:8], magic)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != FormatVersion {
		return fmt.Errorf("%w: format version %d, this build reads %d", errVersion, v, FormatVersion)
	}
	if b[10] != nativeOrder {
		return fmt.Errorf("%w: byte order %d, this machine's is %d", errVersion, b[10], nativeOrder)
	}
	return nil
}

// checkLengths checks the dtype, count and body length of a checksummed header against id and the
// file size, and returns the payload size in bytes.
func checkLengths(b []byte, id entryID) (int, error) {
	if dt := dtype(b[11]); dt != id.dtype {
		return 0, fmt.Errorf("%w: dtype size %d, want %d", errCorrupt, dt, id.dtype)
	}
	count := binary.LittleEndian.Uint64(b[16:])
	if count > MaxValueBytes/uint64(id.dtype) {
		return 0, fmt.Errorf("%w: %d elements exceed the %d-byte limit", errCorrupt, count, MaxValueBytes)
	}
	if body := binary.LittleEndian.Uint64(b[24:]); body != uint64(len(b)-headerSize-trailerSize) {
		return 0, fmt.Errorf("%w: header gives a %d-byte body, file holds %d", errCorrupt, body, len(b)-headerSize-trailerSize)
	}
	return int(count) * int(id.dtype), nil
}

// toLanes returns b transposed in words of w (4 or 8) bytes: byte 0 of every word, then byte 1 of
// every word, and so on; len(b) is a multiple of w. Unrolled per width: the generic loop was 4×
// slower and the largest cost of a disk hit.
func toLanes(b []byte, w int) []byte {
	out := make([]byte, len(b))
	n := len(b) / w
	if w == 4 {
		l0, l1, l2, l3 := out[:n], out[n:2*n], out[2*n:3*n], out[3*n:4*n]
		for i := range n {
			s := b[4*i : 4*i+4 : 4*i+4]
			l0[i], l1[i], l2[i], l3[i] = s[0], s[1], s[2], s[3]
		}
		return out
	}
	l0, l1, l2, l3, l4, l5, l6, l7 := out[:n], out[n:2*n], out[2*n:3*n], out[3*n:4*n],
		out[4*n:5*n], out[5*n:6*n], out[6*n:7*n], out[7*n:8*n]
	for i := range n {
		s := b[8*i : 8*i+8 : 8*i+8]
		l0[i], l1[i], l2[i], l3[i], l4[i], l5[i], l6[i], l7[i] = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
	}
	return out
}

// fromLanes inverts toLanes.
func fromLanes(b []byte, w int) []byte {
	out := make([]byte, len(b))
	n := len(b) / w
	if w == 4 {
		l0, l1, l2, l3 := b[:n], b[n:2*n], b[2*n:3*n], b[3*n:4*n]
		for i := range n {
			d := out[4*i : 4*i+4 : 4*i+4]
			d[0], d[1], d[2], d[3] = l0[i], l1[i], l2[i], l3[i]
		}
		return out
	}
	l0, l1, l2, l3, l4, l5, l6, l7 := b[:n], b[n:2*n], b[2*n:3*n], b[3*n:4*n],
		b[4*n:5*n], b[5*n:6*n], b[6*n:7*n], b[7*n:8*n]
	for i := range n {
		d := out[8*i : 8*i+8 : 8*i+8]
		d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7] = l0[i], l1[i], l2[i], l3[i], l4[i], l5[i], l6[i], l7[i]
	}
	return out
}
