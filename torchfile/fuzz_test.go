package torchfile

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/flextrain/flextrain/safetensors"
)

// FuzzDecode checks that no archive, and no pickle inside a well-formed archive, makes decode panic,
// allocate more than allocBase plus allocPerByte per input byte, or fail with anything but ErrFormat,
// ErrUnsafe or ErrTooLarge, and that whatever it accepts is a set of self-consistent tensors.
//
// The per-byte bound: every opcode pushes at most one value (16 bytes on the stack, whose doubling leaves
// as much again behind), a memo entry costs about 50 bytes for a 1-byte MEMOIZE, a dict item about 100
// with its index, and each distinct tensor of the result (a REDUCE, 1 byte, given memoised arguments) a
// copy of its shape of up to maxDims ints; the ZIP reader costs a few hundred bytes per 46-byte central
// directory record. 512 leaves room for these and still fails a cost that grows faster than the input.
//
// The seeds are small (a real torch.save archive of 753 bytes, crafted ones, the fixtures' pickles) because
// the fuzzer minimises every new input it keeps, at a cost that grows with the input's length.
func FuzzDecode(f *testing.F) {
	pickles := map[string][]byte{}
	for _, name := range []string{"dtypes.bin", "views.bin", "proto4.bin", "noncontig.bin"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		pickles[name] = dataPickle(f, b)
	}
	real, err := os.ReadFile(filepath.Join("testdata", "noncontig.bin"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real, pickles["views.bin"])
	f.Add(torchArchive(f, oneTensor(4), storage16), pickles["proto4.bin"])
	f.Add(bigEndian(f), pickles["dtypes.bin"])
	for _, c := range hostile("/nonexistent/marker") {
		f.Add([]byte{opProto, 2}, c.pickle)
	}
	f.Fuzz(func(t *testing.T, archive, pkl []byte) {
		checkDecode(t, archive)
		checkDecode(t, torchArchive(t, pkl, map[string][]byte{"0": make([]byte, 64), "1": make([]byte, 8)}))
	})
}

// dataPickle returns the data.pkl of a fixture archive (nil for one that is not a ZIP archive).
func dataPickle(f *testing.F, b []byte) []byte {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil
	}
	for _, e := range zr.File {
		if filepath.Base(e.Name) == "data.pkl" {
			r, err := e.Open()
			if err != nil {
				f.Fatal(err)
			}
			p, err := io.ReadAll(r)
			if err != nil {
				f.Fatal(err)
			}
			return p
		}
	}
	return nil
}

// checkDecode decodes b within a 1 MiB limit and checks the allocation, the error and the tensors.
func checkDecode(t *testing.T, b []byte) {
	var ts map[string]safetensors.Tensor
	var err error
	n := allocated(func() { ts, _, err = decode(b, 1<<20) })
	if bound := allocBase + allocPerByte*uint64(len(b)); n > bound {
		t.Fatalf("decode of %d bytes allocated %d; want at most %d", len(b), n, bound)
	}
	if err != nil {
		if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v; want ErrFormat, ErrUnsafe or ErrTooLarge", err)
		}
		return
	}
	for name, tensor := range ts {
		if err := tensor.Check(); err != nil {
			t.Fatalf("tensor %q: %v", name, err)
		}
	}
}
