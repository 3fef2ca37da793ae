package synth

import (
	"fmt"
	"os"
	"testing"
	"time"
)

func TestProbeGen(t *testing.T) {
	dir := os.Getenv("PROBE_DIR")
	if dir == "" {
		t.Skip()
	}
	o := DefaultOptions()
	o.Dir = dir
	t0 := time.Now()
	m, err := Generate(o)
	fmt.Println(time.Since(t0), err, m)
	t0 = time.Now()
	m, err = Generate(o)
	fmt.Println(time.Since(t0), err, m.Reused)
}
