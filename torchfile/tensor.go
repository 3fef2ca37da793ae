package torchfile

import (
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/flextrain/flextrain/safetensors"
)

// maxDims caps a tensor's number of dimensions (PyTorch's own kernels stop at 25 or 64), so that no shape
// read from a file costs more than a fixed amount to copy.
const maxDims = 64

// stateDict returns the tensors of the unpickled state_dict v, a dict or OrderedDict of names to tensors.
// A tensor saved under several names (tied weights) is materialised once and shared.
func (a *archive) stateDict(v any) (map[string]safetensors.Tensor, error) {
	d, ok := v.(*dict)
	if !ok {
		return nil, formatErrorf("data.pkl holds %s, want a state_dict (a dict of names to tensors)", aType(v))
	}
	out := make(map[string]safetensors.Tensor, len(d.keys))
	done := map[*tensorRef]safetensors.Tensor{}
	for i, k := range d.keys {
		name, ok := k.(string)
		if !ok {
			return nil, formatErrorf("state_dict key %s is %s, want a str", scalar(k), aType(k))
		}
		t, err := a.tensor(name, d.vals[i], done)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}

// tensor materialises the state_dict value v of name, once per tensor.
func (a *archive) tensor(name string, v any, done map[*tensorRef]safetensors.Tensor) (safetensors.Tensor, error) {
	ref, ok := v.(*tensorRef)
	if !ok {
		return safetensors.Tensor{}, formatErrorf("state_dict value %s is %s, not a tensor", short(name), aType(v))
	}
	if t, ok := done[ref]; ok {
		return t, nil
	}
	t, err := a.materialize(ref)
	if err != nil {
		return safetensors.Tensor{}, fmt.Errorf("tensor %s: %w", short(name), err)
	}
	done[ref] = t
	return t, nil
}

// materialize checks a tensor's shape, strides and offset against its storage and returns it as a
// contiguous tensor whose Data is a slice of the storage (or of its byte-swapped copy).
func (a *archive) materialize(ref *tensorRef) (safetensors.Tensor, error) {
	shape, err := dims("size", ref.size)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	stride, err := dims("stride", ref.stride)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	data, err := a.data(ref, shape, stride)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	return safetensors.Tensor{DType: ref.dtype, Shape: shape, Data: data}, nil
}

// data returns the bytes of a tensor of the given shape and strides: none for an empty tensor, else the
// contiguous span its offset and size select in its storage.
func (a *archive) data(ref *tensorRef, shape, stride []int) ([]byte, error) {
	if len(stride) != len(shape) {
		return nil, formatErrorf("%d strides for %d dimensions", len(stride), len(shape))
	}
	numel, ok := product(shape, 1)
	if !ok {
		return nil, formatErrorf("size %v has too many elements", shape)
	}
	if numel == 0 {
		return []byte{}, nil
	}
	if !contiguous(shape, stride) {
		return nil, formatErrorf("stride %v of size %v is not contiguous (a transposed or expanded view), "+
			"which this reader does not gather: save it with .contiguous() first", stride, shape)
	}
	size := ref.dtype.Size()
	start, end, err := span(ref.offset, numel, size, len(ref.storage.data))
	if err != nil {
		return nil, err
	}
	b, err := a.bytes(ref.storage, size)
	if err != nil {
		return nil, err
	}
	return b[start:end:end], nil
}

// dims converts a size or stride tuple to non-negative ints, at most maxDims of them.
func dims(what string, t tuple) ([]int, error) {
	if len(t) > maxDims {
		return nil, formatErrorf("%s of %d dimensions, more than %d", what, len(t), maxDims)
	}
	out := make([]int, len(t))
	for i, v := range t {
		n, ok := v.(int64)
		if !ok || n < 0 || uint64(n) > math.MaxInt {
			return nil, formatErrorf("%s element %d is %s, want a non-negative int", what, i, scalar(v))
		}
		out[i] = int(n)
	}
	return out, nil
}

// product multiplies n by the dimensions, reporting false on overflow.
func product(shape []int, n int) (int, bool) {
	for _, d := range shape {
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = int(lo)
	}
	return n, true
}

// contiguous reports whether strides lay a non-empty tensor out row-major without gaps (the stride of a
// dimension of size 1 does not matter, as for PyTorch's expanded position_ids).
func contiguous(shape, stride []int) bool {
	want := 1
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] != 1 && stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

// span is the byte range of numel elements of the given size from element offset, which must lie within a
// storage of n bytes.
func span(offset int64, numel, size, n int) (int, int, error) {
	if offset < 0 || offset > int64(n) {
		return 0, 0, formatErrorf("storage offset %d outside a storage of %d bytes", offset, n)
	}
	start, ok1 := product([]int{int(offset)}, size)
	bytes, ok2 := product([]int{numel}, size)
	if !ok1 || !ok2 || bytes > n-min(start, n) || start > n {
		return 0, 0, formatErrorf("%d elements of %d bytes from offset %d run past the end of a storage of %d bytes",
			numel, size, offset, n)
	}
	return start, start + bytes, nil
}

// bytes returns a storage's bytes in little-endian order for elements of the given size: the storage
// itself (aliasing the file) when it is little-endian or bytes are single, else a swapped copy, made once.
// The copies together may not exceed the file's size, which the storages of a genuine file never do.
func (a *archive) bytes(s *storage, size int) ([]byte, error) {
	if !a.bigEndian || size == 1 {
		a.aliased = true
		return s.data, nil
	}
	id := swapID{s, size}
	if b, ok := a.swapped[id]; ok {
		return b, nil
	}
	if a.copied += int64(len(s.data)); a.copied > int64(len(a.file)) {
		return nil, formatErrorf("big-endian storages overlap: swapping them would copy more than the file's %d bytes", len(a.file))
	}
	b := slices.Clone(s.data)
	for i := 0; i+size <= len(b); i += size {
		slices.Reverse(b[i : i+size])
	}
	a.swapped[id] = b
	return b, nil
}
