package checkpoints

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/flextrain/flextrain/safetensors"
)

// TestLoadAllocatesAboutThePayload: Load streams each tensor file into one buffer of its payload's size,
// so it allocates less than twice the raw payload, the zstd decoders included (reading the whole file,
// then decompressing, then transposing the lanes took about three times).
func TestLoadAllocatesAboutThePayload(t *testing.T) {
	ck := benchCheckpoint(32)
	path, err := Save(t.TempDir(), ck)
	if err != nil {
		t.Fatal(err)
	}
	var raw uint64
	for _, group := range []map[string]safetensors.Tensor{ck.Weights, ck.Optimizer} {
		for _, tensor := range group {
			raw += uint64(len(tensor.Data))
		}
	}
	var got *Checkpoint
	n := bytesAllocated(func() { got, err = Load(path) })
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := sameCheckpoint(got, ck); err != nil {
		t.Fatal(err)
	}
	t.Logf("Load allocated %d bytes for %d bytes of tensor data (%.2f×)", n, raw, float64(n)/float64(raw))
	if n > 2*raw {
		t.Errorf("Load allocated %d bytes for %d bytes of tensor data; want at most twice that", n, raw)
	}
}

// zstdZeros returns a zstd frame that decompresses to n > 0 zero bytes, written by hand as RLE blocks of
// 128 KiB (4 bytes each), so that a 2 GiB bomb takes 64 KiB and no time to build.
func zstdZeros(n int64) []byte {
	const block = 128 << 10
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, // magic
		0x00, // frame header descriptor: no content size, no checksum, no dictionary, a window descriptor
		0x38} // window descriptor: 2^(10+7) bytes = 128 KiB
	for n > 0 {
		size := min(n, block)
		n -= size
		h := uint32(size)<<3 | 1<<1 // an RLE block: its size, then the byte it repeats
		if n == 0 {
			h |= 1 // the last block
		}
		f = append(f, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return f
}

// TestZstdZeros checks the bomb builder against the real decoder.
func TestZstdZeros(t *testing.T) {
	for _, n := range []int64{1, 128 << 10, 3<<17 + 5} {
		dec, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dec.DecodeAll(zstdZeros(n), nil)
		dec.Close()
		if err != nil || !bytes.Equal(got, make([]byte, n)) {
			t.Errorf("zstdZeros(%d) decodes to %d bytes, %v; want %d zero bytes", n, len(got), err, n)
		}
	}
}

// TestLoadRefusesZstdBombs: a tensor file whose body is 64 KiB of zstd that really inflates to 2 GiB of
// zeros, in a checkpoint whose checksums all agree, is refused with ErrCorrupt while Load allocates
// little: at once when its frame claims more than the Store's limit, and as soon as the payload passes
// the length its frame claims when that claim is a lie within the limit.
func TestLoadRefusesZstdBombs(t *testing.T) {
	const bomb = 2 << 30
	small := Limits{Weights: 1 << 20, Optimizer: 1 << 20}
	for _, tc := range []struct {
		name   string
		file   string
		kind   string
		claim  uint64
		limits Limits
		says   string // in the error
	}{
		{"weights claim 2 GiB over the limit", weightsFile, kindWeights, bomb, small, "payload claims 2147483648 bytes, the limit is 1048576"},
		{"optimizer claim 2 GiB over the limit", optimizerFile, kindOptimizer, bomb, small, "payload claims 2147483648 bytes, the limit is 1048576"},
		{"weights claim 1 MiB within the default limit", weightsFile, kindWeights, 1 << 20, Limits{}, errPastEnd.Error()},
		{"optimizer claim 1 MiB within a limit", optimizerFile, kindOptimizer, 1 << 20, small, errPastEnd.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := mustSave(t, t.TempDir(), 7)
			writeBytes(t, filepath.Join(path, tc.file), craftFrame(tc.kind, tc.claim, zstdZeros(bomb)))
			reseal(t, path, 7)
			var ck *Checkpoint
			var err error
			n := bytesAllocated(func() { ck, err = Store{Limits: tc.limits}.Load(path) })
			t.Logf("Load allocated %d bytes", n)
			if n > 16<<20 {
				t.Errorf("Load allocated %d bytes; want at most 16 MiB", n)
			}
			if !errors.Is(err, ErrCorrupt) || ck != nil {
				t.Fatalf("got (%v, %v); want (nil, ErrCorrupt)", ck != nil, err)
			}
			if msg := err.Error(); !strings.Contains(msg, filepath.Join(path, tc.file)) || !strings.Contains(msg, tc.says) {
				t.Errorf("error %q; want one naming %s and saying %q", msg, filepath.Join(path, tc.file), tc.says)
			}
		})
	}
}
