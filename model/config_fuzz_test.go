package model

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

// FuzzParseConfig: no JSON makes ParseConfig panic, a configuration it accepts is valid and within the
// size bounds, and parsing allocates at most allocPerByte bytes per input byte plus allocSlack (encoding/json
// keeps a few copies of the input and a few hundred bytes per value it decodes).
func FuzzParseConfig(f *testing.F) {
	const allocPerByte, allocSlack = 256, 64 << 10
	b, err := os.ReadFile("../testdata/golden/tiny_train.safetensors")
	if err != nil {
		f.Fatal(err)
	}
	if i := strings.Index(string(b), `{"vision"`); i >= 0 {
		if j := strings.Index(string(b[i:]), `}}`); j >= 0 {
			f.Add(b[i : i+j+2])
		}
	}
	f.Add([]byte(`{"vision": {"image_size": 32}, "text": {}, "flex": {"n_sa": 1}}`))
	f.Add([]byte(`{"text": {"num_layers": 1000000000}} trailing`))
	f.Fuzz(func(t *testing.T, in []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		c, err := ParseConfig(in)
		runtime.ReadMemStats(&after)
		if used := after.TotalAlloc - before.TotalAlloc; used > uint64(allocPerByte*len(in)+allocSlack) {
			t.Errorf("parsing %d bytes allocated %d", len(in), used)
		}
		if err == nil && (c.Validate() != nil || c.Text.NumLayers > MaxLayers || c.Vision.ImageSize > MaxImageSize) {
			t.Errorf("ParseConfig accepted %+v", c)
		}
	})
}
