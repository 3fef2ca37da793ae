package checkpoints

import (
	"math"
	"math/bits"
)

// Limits bounds the tensor files a Store reads: the most bytes each may decompress to. A frame that claims
// more is refused (ErrCorrupt, naming the file, the claim and the limit) before anything is allocated or
// decompressed, so the memory a hostile or damaged checkpoint can cost is bounded by what the caller
// expects, not by what the file says. A caller that knows its tensors sets each field from PayloadBound.
// Zero, a negative value, or one above MaxPayload means MaxPayload. Save refuses to write a tensor file
// larger than its limit, so a Store never writes a checkpoint it would refuse to load.
type Limits struct {
	Weights   int64 // the most decompressed bytes of weights.st.zst
	Optimizer int64 // the most decompressed bytes of optimizer.st.zst
}

// limit returns the bound on the payload of the tensor file of kind.
func (l Limits) limit(kind string) int64 {
	n := l.Weights
	if kind == kindOptimizer {
		n = l.Optimizer
	}
	if n <= 0 || n > MaxPayload {
		return MaxPayload
	}
	return n
}

// PayloadBound returns the most bytes the payload Save writes for tensors of these names and shapes can
// take when every element has bytesPerElement bytes: their data, plus a safe upper bound on the
// safetensors header (its 8-byte length and the JSON that gives each tensor's name, dtype, shape and
// offsets, padded) with room for __metadata__. A trainer sets Store.Limits from it: Weights from the
// shapes of the weights it saves, Optimizer from those of its optimizer state (for AdamW, "m."+name and
// "v."+name with each weight's shape), so that a checkpoint claiming more than the model can hold is
// refused before it costs memory. The result saturates at math.MaxInt64 rather than overflow.
func PayloadBound(shapes map[string][]int, bytesPerElement int) int64 {
	n := int64(headerAllowance)
	for name, shape := range shapes {
		n = addSat(n, entryBound(name, shape))
		n = addSat(n, dataBound(shape, bytesPerElement))
	}
	return n
}

// Allowances of PayloadBound, each generous.
const (
	// headerAllowance covers the 8-byte header length, the braces, the padding to a multiple of 8 bytes
	// and a __metadata__ entry (Save writes none).
	headerAllowance = 64 << 10
	// entryAllowance covers one tensor's entry besides its name and shape: quotes, colon and comma, the
	// keys "dtype", "shape" and "data_offsets", a dtype of up to 4 letters and two 19-digit offsets (88
	// bytes in all).
	entryAllowance = 128
	// dimAllowance covers one dimension of a shape: up to 20 characters of a 64-bit integer and a comma.
	dimAllowance = 21
	// nameExpansion is the most bytes JSON takes for one byte of a name (a control character or an invalid
	// UTF-8 byte is written as a 6-byte \u escape).
	nameExpansion = 6
)

// entryBound bounds the header bytes of one tensor's entry.
func entryBound(name string, shape []int) int64 {
	return int64(nameExpansion*len(name) + entryAllowance + dimAllowance*len(shape))
}

// dataBound is the data size of a tensor of shape with elements of size bytes, saturating at
// math.MaxInt64; negative numbers count as zero.
func dataBound(shape []int, size int) int64 {
	n := uint64(max(size, 0))
	for _, d := range shape {
		hi, lo := bits.Mul64(n, uint64(max(d, 0)))
		if hi != 0 || lo > math.MaxInt64 {
			return math.MaxInt64
		}
		n = lo
	}
	return int64(n)
}

// addSat adds two non-negative numbers, saturating at math.MaxInt64.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Bounds on the files Load reads besides the tensor files: each is checked against the file's size before
// the file is read, so no file can make Load allocate more than its bound.
const (
	// maxManifest bounds MANIFEST, which lists four files in well under a kilobyte.
	maxManifest = 1 << 20
	// maxPlainFile bounds trainer_state.json and config.yaml, a few kilobytes each; Save refuses larger ones.
	maxPlainFile = 16 << 20
)

// maxBody is the most bytes a zstd body of raw bytes (at most MaxPayload) can take: zstd stores
// incompressible data in raw blocks of at most 128 KiB behind a 3-byte header, plus a frame header and
// checksum of at most 22 bytes, far below raw/128 + 1 KiB. A body larger than this for its claimed raw
// length is not one Save wrote.
func maxBody(raw int64) int64 { return raw + raw/128 + 1024 }

// maxInflation is the most bytes one byte of zstd can decompress to: every block of a frame takes at
// least 4 bytes (an RLE block: a 3-byte header and the byte it repeats) and yields at most 128 KiB. A raw
// length beyond maxInflation times the body's size is a lie, refused before its buffer is allocated.
const maxInflation = (128 << 10) / 4

// maxFrameSize is the most bytes a frame holding at most raw bytes of payload can take on disk.
func maxFrameSize(raw int64) int64 { return headerSize + maxBody(raw) + trailerSize }
