// Package safetensors reads and writes the Hugging Face safetensors format, strictly.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON
//
//	{"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, "__metadata__": {"k": "v"}}
//
// and then the data buffer, which the offsets index. Weights come from the internet, so the reader trusts
// nothing: a header longer than the file, unknown dtypes, offsets that disagree with the shape, leave the
// buffer or overlap, repeated names and non-string metadata are all errors wrapping ErrFormat that name the
// tensor, and no allocation is sized by a number read from the file before it is checked against the file.
// The readers open only regular files (a FIFO or /dev/zero named as a checkpoint is refused at once, never
// waited on or read without end), and ReadFileLimit and ReadShardedLimit refuse files larger than the caller
// expects before reading them.
package safetensors

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/bits"
	"slices"
)

// ErrFormat is wrapped by every error that reports a malformed file, so callers can tell a bad file
// (errors.Is(err, ErrFormat)) from an I/O failure.
var ErrFormat = errors.New("malformed safetensors")

// ErrTooLarge is wrapped by the error of ReadFileLimit or ReadShardedLimit when a file, or the shards
// together, hold more bytes than the caller's limit: a well-formed file perhaps, but not the one expected.
var ErrTooLarge = errors.New("larger than the limit")

// MaxHeaderSize caps the JSON header (100 MiB, as the Hugging Face reader does): a longer claim is refused
// before anything is allocated for it.
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header key that holds the string→string metadata.
const metadataKey = "__metadata__"

// DType names an element type the way the header spells it.
type DType string

// The element types this package reads and writes.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

var dtypeSizes = map[DType]int{F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1, BOOL: 1}

// Size is the width of one element in bytes, or 0 for a dtype this package does not know.
func (d DType) Size() int { return dtypeSizes[d] }

// IsFloat reports whether d is one of the floating-point dtypes (F64, F32, F16, BF16).
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// Tensor is one named array: its dtype, its shape (row-major, empty for a scalar) and its raw
// little-endian bytes. Tensors returned by Parse alias the parsed buffer: copy Data before changing it.
type Tensor struct {
	DType DType
	Shape []int
	Data  []byte
}

// File is the content of a safetensors file: free-form string metadata and the tensors by name.
type File struct {
	Metadata map[string]string
	Tensors  map[string]Tensor
}

// Names returns the tensor names in sorted order, the order Write lays them out in.
func (f *File) Names() []string {
	return slices.Sorted(maps.Keys(f.Tensors))
}

// NumElements is the product of the shape (1 for a scalar). It saturates at math.MaxInt on overflow, which
// never matches a real buffer; Check reports the overflow itself.
func (t Tensor) NumElements() int {
	n, ok := numElements(t.Shape)
	if !ok {
		return math.MaxInt
	}
	return n
}

// Check reports whether t is self-consistent: a known dtype, no negative dimension, no element-count
// overflow, and exactly NumElements·Size bytes of data. The error wraps ErrFormat.
func (t Tensor) Check() error {
	if err := t.check(); err != nil {
		return formatErrorf("%v", err)
	}
	return nil
}

func (t Tensor) check() error {
	size := t.DType.Size()
	if size == 0 {
		return fmt.Errorf("unknown dtype %q", t.DType)
	}
	n, err := byteSize(t.Shape, size)
	if err != nil {
		return err
	}
	if len(t.Data) != n {
		return fmt.Errorf("%d data bytes, want %d for %s%v", len(t.Data), n, t.DType, t.Shape)
	}
	return nil
}

// formatErrorf builds an error wrapping ErrFormat.
func formatErrorf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, a...)...)
}

// numElements multiplies the dimensions, reporting false on a negative one or on overflow.
func numElements(shape []int) (int, bool) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return int(n), true
}

// byteSize is the data size of a shape of elements of size bytes; it refuses negative dimensions and
// sizes that overflow an int.
func byteSize(shape []int, size int) (int, error) {
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
	}
	n, ok := numElements(append(append([]int(nil), shape...), size))
	if !ok {
		return 0, fmt.Errorf("byte size of shape %v overflows", shape)
	}
	return n, nil
}
