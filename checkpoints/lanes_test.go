package checkpoints

import (
	"bytes"
	"errors"
	"testing"
)

// TestLanesRoundTrip checks toLanes against its definition and laneWriter as its inverse, however the
// lanes arrive: whole, byte by byte, or in chunks that straddle lanes.
func TestLanesRoundTrip(t *testing.T) {
	for n := 0; n <= 13; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i + 1)
		}
		lanes := toLanes(b)
		for i := 0; i < n/4*4; i++ { // byte i of the input is byte i%4 of word i/4
			if got, want := lanes[(i%4)*(n/4)+i/4], b[i]; got != want {
				t.Errorf("n=%d: input byte %d landed as %d; want %d", n, i, got, want)
			}
		}
		for _, chunk := range []int{1, 2, 3, 5, max(n, 1)} {
			w := &laneWriter{out: make([]byte, n)}
			for rest := lanes; len(rest) > 0; rest = rest[min(chunk, len(rest)):] {
				if _, err := w.Write(rest[:min(chunk, len(rest))]); err != nil {
					t.Fatalf("n=%d chunk %d: Write: %v", n, chunk, err)
				}
			}
			if !bytes.Equal(w.out, b) {
				t.Errorf("n=%d chunk %d: laneWriter got %v; want %v", n, chunk, w.out, b)
			}
		}
	}
}

// TestLaneWriterRefusesExtraBytes: one byte more than the payload's length is errPastEnd.
func TestLaneWriterRefusesExtraBytes(t *testing.T) {
	for _, n := range []int{0, 3, 8, 9} {
		w := &laneWriter{out: make([]byte, n)}
		if _, err := w.Write(make([]byte, n)); err != nil {
			t.Fatalf("n=%d: Write of %d bytes: %v", n, n, err)
		}
		if _, err := w.Write([]byte{0}); !errors.Is(err, errPastEnd) {
			t.Errorf("n=%d: Write past the end: got %v; want errPastEnd", n, err)
		}
	}
}
