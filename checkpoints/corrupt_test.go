package checkpoints

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// offsets returns about n byte offsets spread over a file of size bytes, plus every byte of the frame
// header when the file is framed, so that magic, version, kind and lengths are each hit.
func offsets(size, n int, framed bool) []int {
	var out []int
	if framed {
		for i := 0; i < headerSize && i < size; i++ {
			out = append(out, i)
		}
	}
	for i := 0; i < n; i++ {
		out = append(out, i*(size-1)/max(n-1, 1))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestLoadDetectsEveryFlippedByte checks docs/RELIABILITY.md §4: one flipped byte anywhere in any file of a
// checkpoint makes Load fail with ErrVersion (the magic and version bytes of a frame) or ErrCorrupt
// (anything else), and Load never returns a checkpoint then.
func TestLoadDetectsEveryFlippedByte(t *testing.T) {
	path := mustSave(t, t.TempDir(), 7)
	for _, name := range append(slices.Clone(payloadFiles), manifestFile) {
		file := filepath.Join(path, name)
		orig := readBytes(t, file)
		framed := bytes.HasPrefix(orig, []byte(magic))
		for _, off := range offsets(len(orig), 64, framed) {
			mutated := slices.Clone(orig)
			mutated[off] ^= 0x5a
			writeBytes(t, file, mutated)
			ck, err := Load(path)
			want := ErrCorrupt
			if framed && off < 12 {
				want = ErrVersion
			}
			if !errors.Is(err, want) || ck != nil {
				t.Errorf("%s byte %d flipped: got (%v, %v); want (nil, %v)", name, off, ck != nil, err, want)
			}
		}
		writeBytes(t, file, orig)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("Load after restoring every file: %v", err)
	}
}

// TestLoadDetectsTruncation checks docs/RELIABILITY.md §4 for truncations at 0, 1, header−1, header and len−1.
func TestLoadDetectsTruncation(t *testing.T) {
	path := mustSave(t, t.TempDir(), 7)
	for _, name := range append(slices.Clone(payloadFiles), manifestFile) {
		file := filepath.Join(path, name)
		orig := readBytes(t, file)
		for _, n := range []int{0, 1, headerSize - 1, headerSize, len(orig) - 1} {
			if n >= len(orig) {
				continue
			}
			writeBytes(t, file, orig[:n])
			if ck, err := Load(path); !errors.Is(err, ErrCorrupt) || ck != nil {
				t.Errorf("%s cut to %d of %d bytes: got (%v, %v); want (nil, ErrCorrupt)", name, n, len(orig), ck != nil, err)
			}
		}
		writeBytes(t, file, orig)
	}
}

// TestLoadCraftedFiles: files whose checksums agree (an attacker's, or a bug's) but whose content is
// wrong are still refused, each with the error naming the file, and without a large allocation even
// when a length field claims 2^62 bytes (docs/RELIABILITY.md §19).
func TestLoadCraftedFiles(t *testing.T) {
	weights := func(b []byte) (string, []byte) { return weightsFile, b }
	for _, tc := range []struct {
		name  string
		craft func(orig []byte) (string, []byte)
		want  error
	}{
		{"weights framed as optimizer", func(b []byte) (string, []byte) {
			return weightsFile, refreeze(setKind(b, kindOptimizer))
		}, ErrCorrupt},
		{"version 2", func(b []byte) (string, []byte) { return weights(refreeze(setU32(b, 8, 2))) }, ErrVersion},
		{"body length off by one", func(b []byte) (string, []byte) {
			return weights(refreeze(setU64(b, 24, binary.LittleEndian.Uint64(b[24:])+1)))
		}, ErrCorrupt},
		{"raw length short", func(b []byte) (string, []byte) {
			return weights(refreeze(setU64(b, 16, binary.LittleEndian.Uint64(b[16:])-1)))
		}, ErrCorrupt},
		{"raw length past MaxPayload", func(b []byte) (string, []byte) {
			return weights(refreeze(setU64(b, 16, MaxPayload+1)))
		}, ErrCorrupt},
		{"raw length 1 GiB, more than the body can hold", func(b []byte) (string, []byte) {
			return weights(refreeze(setU64(b, 16, 1<<30)))
		}, ErrCorrupt},
		{"payload not safetensors", func([]byte) (string, []byte) {
			return weights(encodeFrame(kindWeights, []byte("not safetensors at all"), newEncoder()))
		}, ErrCorrupt},
		{"safetensors header claims 2^62 bytes", func([]byte) (string, []byte) {
			raw := binary.LittleEndian.AppendUint64(nil, 1<<62)
			return weights(encodeFrame(kindWeights, append(raw, "{}"...), newEncoder()))
		}, ErrCorrupt},
		{"state not JSON", func([]byte) (string, []byte) { return stateFile, []byte(`{"step":`) }, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := mustSave(t, t.TempDir(), 7)
			name, b := tc.craft(readBytes(t, filepath.Join(path, weightsFile)))
			writeBytes(t, filepath.Join(path, name), b)
			reseal(t, path, 7)
			var ck *Checkpoint
			var err error
			if n := bytesAllocated(func() { ck, err = Load(path) }); n > 8<<20 {
				t.Errorf("Load allocated %d bytes refusing a %d-byte file; want at most 8 MiB", n, len(b))
			}
			if !errors.Is(err, tc.want) || ck != nil {
				t.Fatalf("got (%v, %v); want (nil, %v)", ck != nil, err, tc.want)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(filepath.Join(path, name))) {
				t.Errorf("error %q does not name %s", err, filepath.Join(path, name))
			}
		})
	}
}

// TestLoadManifestStepMustMatchName: a checkpoint copied under another step's name is refused.
func TestLoadManifestStepMustMatchName(t *testing.T) {
	dir := t.TempDir()
	src := mustSave(t, dir, 7)
	dst := filepath.Join(dir, "checkpoint-8")
	if err := os.Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dst); !errors.Is(err, ErrCorrupt) {
		t.Errorf("checkpoint-7 renamed to checkpoint-8: got %v; want ErrCorrupt", err)
	}
	best := filepath.Join(dir, "best")
	if err := os.Rename(dst, best); err != nil {
		t.Fatal(err)
	}
	if ck, err := Load(best); err != nil || ck.Step != 7 {
		t.Errorf("checkpoint renamed to best: got %v; want step 7", err)
	}
}

// TestDecodeRefusesZstdBomb checks docs/RELIABILITY.md §19: a frame whose 256 MiB of zeros compress to a few
// kilobytes but whose header claims 1 KiB is refused after decoding little more than 1 KiB.
func TestDecodeRefusesZstdBomb(t *testing.T) {
	const bomb = 256 << 20
	var body bytes.Buffer
	w, err := zstd.NewWriter(&body, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow))
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for i := 0; i < bomb/len(zeros); i++ {
		w.Write(zeros)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, claim := range []uint64{1 << 10, 8 << 20} {
		frame := craftFrame(kindWeights, claim, body.Bytes())
		allocated := bytesAllocated(func() {
			if _, err := decodeFrame(frame, kindWeights, MaxPayload); !errors.Is(err, ErrCorrupt) {
				t.Errorf("claim %d: got %v; want ErrCorrupt", claim, err)
			}
		})
		t.Logf("claim %d: allocated %d", claim, allocated)
		if limit := 3*claim + 3*zstdWindow; allocated > limit {
			t.Errorf("claim %d: decoding the bomb allocated %d bytes; want at most %d", claim, allocated, limit)
		}
	}
}

// TestDecodeRefusesHugeWindow: a frame asking for a zstd window larger than the encoder uses is refused
// before the window is allocated: only the payload's buffer, which its raw length within the limit
// sizes, is.
func TestDecodeRefusesHugeWindow(t *testing.T) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	body := enc.EncodeAll(make([]byte, 80<<20), nil)
	allocated := bytesAllocated(func() {
		if _, err := decodeFrame(craftFrame(kindWeights, 80<<20, body), kindWeights, MaxPayload); !errors.Is(err, ErrCorrupt) {
			t.Errorf("64 MiB window: got %v; want ErrCorrupt", err)
		}
	})
	if allocated > 80<<20+16<<20 {
		t.Errorf("refusing a 64 MiB window allocated %d bytes; want at most the 80 MiB payload and 16 MiB", allocated)
	}
}

// craftFrame builds a frame with a valid checksum around body, claiming rawLen.
func craftFrame(kind string, rawLen uint64, body []byte) []byte {
	f := encodeFrame(kindManifest, body, nil) // an uncompressed frame around body, then fix the fields
	copy(f[12:16], kind)
	binary.LittleEndian.PutUint64(f[16:], rawLen)
	return refreeze(f)
}

// decodeFrame is readFrame over a frame held in memory.
func decodeFrame(b []byte, kind string, limit int64) ([]byte, error) {
	return readFrame(bytes.NewReader(b), int64(len(b)), kind, limit)
}

// bytesAllocated returns the bytes the Go heap allocated while f ran.
func bytesAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// refreeze recomputes the trailing SHA-256 of a frame after a test changed it.
func refreeze(f []byte) []byte {
	sum := sha256.Sum256(f[:len(f)-trailerSize])
	return append(slices.Clone(f[:len(f)-trailerSize]), sum[:]...)
}

func setKind(b []byte, kind string) []byte {
	b = slices.Clone(b)
	copy(b[12:16], kind)
	return b
}

func setU32(b []byte, off int, v uint32) []byte {
	b = slices.Clone(b)
	binary.LittleEndian.PutUint32(b[off:], v)
	return b
}

func setU64(b []byte, off int, v uint64) []byte {
	b = slices.Clone(b)
	binary.LittleEndian.PutUint64(b[off:], v)
	return b
}
