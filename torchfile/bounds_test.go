package torchfile

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// allocBase and allocPerByte bound what reading a hostile file may allocate: allocBase plus allocPerByte
// per byte of the file (see FuzzDecode for how the per-byte cost arises).
const (
	allocBase    = 256 << 10
	allocPerByte = 512
)

// storage16 is one 16-byte storage "0", four float32 elements.
var storage16 = map[string][]byte{"0": make([]byte, 16)}

// withLength appends an opcode and its length argument of n bytes.
func withLength(op byte, n int, length uint64) []byte {
	b := []byte{opProto, 4, op}
	return append(b, binary.LittleEndian.AppendUint64(nil, length)[:n]...)
}

// malformed lists archives that must be refused with target, each naming what its error should say.
func malformed(t *testing.T) []struct {
	name    string
	archive []byte
	target  error
	says    string
} {
	dict := func(v *pickler) []byte { return v.op(opSetItem).done() }
	w := func() *pickler { return newPickle(2).op(opEmptyDict).str("w") }
	tensor := func(numel, offset int64, size ...int64) []byte {
		stride := make([]int64, len(size))
		for i, n := len(size)-1, int64(1); i >= 0; i-- {
			stride[i], n = n, n*max(size[i], 1)
		}
		return torchArchive(t, dict(w().tensor("FloatStorage", "0", numel, offset, size, stride)), storage16)
	}
	fixture, err := os.ReadFile("testdata/dtypes.bin")
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name    string
		archive []byte
		target  error
		says    string
	}{
		{"a storage claiming more than the limit", tensor(1<<40, 0, 1<<40), ErrTooLarge, "limit"},
		{"a storage claiming more elements than int64 bytes", tensor(1<<62, 0, 1), ErrTooLarge, "claims"},
		{"a storage entry shorter than numel·itemsize", tensor(5, 0, 5), ErrFormat, "holds 16 bytes"},
		{"a size past the storage", torchArchive(t, dict(w().tensor("FloatStorage", "0", 4, 0, []int64{5}, []int64{1})), storage16), ErrFormat, "run past the end"},
		{"an offset past the storage", tensor(4, 3, 2), ErrFormat, "run past the end"},
		{"a negative offset", tensor(4, -1, 2), ErrFormat, "offset -1"},
		{"a size whose product overflows", tensor(4, 0, 1<<40, 1<<40), ErrFormat, "too many elements"},
		{"65 dimensions", tensor(4, 0, make([]int64, 65)...), ErrFormat, "65 dimensions"},
		{"a negative dimension", tensor(4, 0, -1), ErrFormat, "non-negative"},
		{"a storage entry that is missing", torchArchive(t, oneTensor(4), nil), ErrFormat, `no entry "archive/data/0"`},
		{"a string longer than the pickle", torchArchive(t, withLength(opBinUnicode8, 8, 1<<62), nil), ErrFormat, "runs past the end"},
		{"bytes longer than the pickle", torchArchive(t, withLength(opBinBytes, 4, 1<<32-1), nil), ErrFormat, "runs past the end"},
		{"a frame longer than the pickle", torchArchive(t, withLength(opFrame, 8, 1<<60), nil), ErrFormat, "frame of"},
		{"an integer of 9 bytes", torchArchive(t, withLength(opLong1, 1, 9), nil), ErrFormat, "64 bits"},
		{"a memo slot never set", torchArchive(t, newPickle(2).op(opBinGet, 7).done(), nil), ErrFormat, "memo slot 7"},
		{"a REDUCE on an empty stack", torchArchive(t, newPickle(2).op(opReduce).done(), nil), ErrFormat, "stack"},
		{"protocol 6", torchArchive(t, newPickle(6).op(opNone).done(), nil), ErrFormat, "protocol 6"},
		{"a text opcode of protocol 0", torchArchive(t, []byte("I1\n."), nil), ErrFormat, "unsupported pickle opcode"},
		{"a pickle without STOP", torchArchive(t, bytes.Repeat([]byte{opMark}, 1<<16), nil), ErrFormat, "without a STOP"},
		{"a list, not a state_dict", torchArchive(t, newPickle(2).op(opEmptyList).done(), nil), ErrFormat, "holds a list"},
		{"a value that is not a tensor", torchArchive(t, newPickle(2).op(opEmptyDict).str("epoch").int(3).op(opSetItem).done(), nil), ErrFormat, `"epoch" is an int`},
		{"a repeated key", torchArchive(t, newPickle(2).op(opEmptyDict, opMark).str("a").op(opNone).str("a").op(opNone, opSetItems).done(), nil), ErrFormat, "repeated"},
		{"a list as a dict key", torchArchive(t, newPickle(2).op(opEmptyDict, opEmptyList, opNone, opSetItem).done(), nil), ErrFormat, "key that is a list"},
		{"a truncated archive (half)", fixture[:len(fixture)/2], ErrFormat, "ZIP"},
		{"a truncated archive (last byte)", fixture[:len(fixture)-1], ErrFormat, "ZIP"},
		{"a truncated archive (header only)", fixture[:30], ErrFormat, "ZIP"},
		{"a compressed data.pkl", deflated(t, oneTensor(4)), ErrFormat, "compressed"},
		{"a TorchScript archive", torchArchive(t, oneTensor(4), storage16, "constants.pkl", "x"), ErrFormat, "TorchScript"},
		{"a repeated entry", torchArchive(t, oneTensor(4), storage16, "data/0", "again"), ErrFormat, "appears twice"},
		{"a size of tuples nested 60 deep, each shared twice", torchArchive(t, nestedSize(), storage16), ErrFormat, "size element 0 is a tuple"},
		{"a dict key longer than 4 KiB", torchArchive(t, dict(newPickle(2).op(opEmptyDict).str(strings.Repeat("k", 5000)).op(opNone)), nil), ErrFormat, "dict key of 5000 bytes"},
		{"a storage key longer than 4 KiB", torchArchive(t, dict(w().tensor("FloatStorage", strings.Repeat("0", 5000), 1, 0, []int64{1}, []int64{1})), nil), ErrFormat, "storage key of 5000 bytes"},
		{"int8 storage", torchArchive(t, dict(w().tensor("CharStorage", "0", 4, 0, []int64{4}, []int64{1})), storage16), ErrFormat, "torch.CharStorage: tensors of int8 elements are not supported"},
		{"an unknown byte order", torchArchive(t, oneTensor(4), storage16, "byteorder", "middle"), ErrFormat, "byteorder"},
	}
}

// nestedSize is a tensor whose size is ((t59, t59),) where t0 = (1,) and t(i+1) = (ti, ti): 2^60 leaves in
// a few hundred bytes, which an error message must not print.
func nestedSize() []byte {
	p := newPickle(2).op(opEmptyDict).str("w").global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.persistent("FloatStorage", "0", 4).int(0).int(1).op(opTuple1, opBinPut, 0, opPop)
	for range 60 {
		p.op(opBinGet, 0, opBinGet, 0, opTuple2, opBinPut, 0, opPop)
	}
	p.op(opBinGet, 0, opTuple1).ints(1).op(opNewFalse).orderedDict()
	return p.op(opTuple, opReduce, opSetItem).done()
}

// deflated is an archive whose data.pkl is compressed, which torch.save never writes.
func deflated(t *testing.T, pkl []byte) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	f, err := w.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	f.Write(pkl)
	w.Close()
	return buf.Bytes()
}

// TestReadFileRefusesMalformed checks that each malformed or oversized file gives an error wrapping the
// right sentinel and naming the file, not a panic, and allocates no more than its size warrants.
func TestReadFileRefusesMalformed(t *testing.T) {
	dir := t.TempDir()
	for i, c := range malformed(t) {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("%02d.bin", i))
			os.WriteFile(path, c.archive, 0o644)
			var err error
			n := allocated(func() { _, err = ReadFile(path, 1<<20) })
			if !errors.Is(err, c.target) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("got %v; want an error wrapping %v naming the file and saying %q", err, c.target, c.says)
			}
			if bound := allocBase + allocPerByte*uint64(len(c.archive)); n > bound {
				t.Errorf("allocated %d bytes for a %d-byte file; want at most %d", n, len(c.archive), bound)
			}
		})
	}
}

func TestReadFileLimit(t *testing.T) {
	st, err := os.Stat("testdata/dtypes.bin")
	if err != nil {
		t.Fatal(err)
	}
	size := st.Size()
	for _, c := range []struct {
		name    string
		limit   int64
		tooLong bool
	}{
		{"no limit", 0, false}, {"negative: no limit", -1, false}, {"exactly the size", size, false},
		{"a byte short", size - 1, true}, {"one byte", 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadFile("testdata/dtypes.bin", c.limit)
			if c.tooLong != errors.Is(err, ErrTooLarge) || (!c.tooLong && err != nil) {
				t.Errorf("got %v; want too large: %v", err, c.tooLong)
			}
		})
	}
}

// TestReadFileSparseHuge checks that a 64 GiB sparse file is refused by its size, before it is mapped.
func TestReadFileSparseHuge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.bin")
	os.WriteFile(path, torchArchive(t, oneTensor(4), storage16), 0o644)
	if err := os.Truncate(path, 64<<30); err != nil {
		t.Skip("no sparse files here:", err)
	}
	var err error
	n := allocated(func() { _, err = ReadFile(path, 1<<30) })
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) || n > allocBase {
		t.Errorf("got %v after allocating %d bytes; want ErrTooLarge naming the file, at once", err, n)
	}
}
