package featcache

import (
	"bytes"
	"errors"
	"testing"
)

func TestLanesRoundTrip(t *testing.T) {
	for _, w := range []int{4, 8} {
		b := make([]byte, 6*w)
		for i := range b {
			b[i] = byte(i)
		}
		lanes := toLanes(b, w)
		if lanes[1] != byte(w) || lanes[6] != 1 {
			t.Errorf("w=%d: lanes[1], lanes[6] = %d, %d; want byte 0 of word 1 (%d), byte 1 of word 0 (1)", w, lanes[1], lanes[6], w)
		}
		if got := fromLanes(lanes, w); !bytes.Equal(got, b) {
			t.Errorf("w=%d: fromLanes(toLanes(b)) = %v; want %v", w, got, b)
		}
	}
}

// TestEveryByteFlipIsCaught flips each byte of a file in turn: the magic, version and byte order
// give errVersion, every other byte errCorrupt. No flip yields features.
func TestEveryByteFlipIsCaught(t *testing.T) {
	enc, dec := newCodec()
	for _, dt := range []dtype{4, 8} {
		id := entryID{key: keyOf(1), view: ViewHR, dtype: dt}
		raw := bytesOf(normals[float64](40, 1))[:40*int(dt)]
		file := encodeFile("fp", id, raw, enc)
		if got, err := decodeFile(file, "fp", id, dec); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("dtype %v: intact file: err %v, payload equal %v; want nil, true", dt, err, bytes.Equal(got, raw))
		}
		for i := range file {
			bad := bytes.Clone(file)
			bad[i] ^= 0x10
			want := errCorrupt
			if i < 11 {
				want = errVersion
			}
			if _, err := decodeFile(bad, "fp", id, dec); !errors.Is(err, want) {
				t.Errorf("dtype %v, byte %d flipped: got %v; want %v", dt, i, err, want)
			}
		}
	}
}

func TestEveryTruncationIsCaught(t *testing.T) {
	enc, dec := newCodec()
	id := entryID{key: keyOf(1), view: ViewLR, dtype: 4}
	file := encodeFile("fp", id, bytesOf(normals[float32](40, 1)), enc)
	for n := range len(file) {
		if _, err := decodeFile(file[:n], "fp", id, dec); !errors.Is(err, errCorrupt) && !errors.Is(err, errVersion) {
			t.Errorf("truncated to %d of %d bytes: got %v; want errCorrupt or errVersion", n, len(file), err)
		}
	}
}

// TestForgedLengthsAreRefused: a header whose checksum was recomputed (so only the length checks
// stand) cannot make the decoder allocate or produce more than the count it claims.
func TestForgedLengthsAreRefused(t *testing.T) {
	enc, dec := newCodec()
	id := entryID{key: keyOf(1), view: ViewLR, dtype: 4}
	fp := "fp"
	for _, tc := range []struct {
		name  string
		count uint64
	}{
		{"count too small", 39},
		{"count too large", 41},
		{"count past MaxValueBytes", MaxValueBytes/4 + 1},
	} {
		file := encodeFile(fp, id, bytesOf(normals[float32](40, 1)), enc)
		putUint64(file[16:], tc.count)
		reseal(file, fp, id)
		if _, err := decodeFile(file, fp, id, dec); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: got %v; want errCorrupt", tc.name, err)
		}
	}
}
