package checkpoints

import (
	"bytes"
	"testing"
)

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
		if got := fromLanes(lanes); !bytes.Equal(got, b) {
			t.Errorf("n=%d: fromLanes(toLanes(b)) = %v; want %v", n, got, b)
		}
	}
}
