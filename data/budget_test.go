package data

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"path/filepath"
	"runtime"
	"testing"
)

// TestImageBudget checks the header against the budget: the padded square, and the decoded bytes. An
// image within it passes the header and then fails on its empty pixel data (ErrImageUndecoded).
func TestImageBudget(t *testing.T) {
	tests := []struct {
		name      string
		file      []byte
		maxPixels int64
		want      error
	}{
		{"RGB 4096x4096, default", pngHeader(4096, 4096), 0, ErrImageUndecoded},
		{"RGB 4097x1: square past the default", pngHeader(4097, 1), 0, ErrImageTooLarge},
		{"RGB 16000x1000: a 1 GB square", pngHeader(16000, 1000), 0, ErrImageTooLarge},
		{"RGB 1000x1000 within 1 Mpx", pngHeader(1000, 1000), 1 << 20, ErrImageUndecoded},
		{"RGB 1025x1 past 1 Mpx", pngHeader(1025, 1), 1 << 20, ErrImageTooLarge},
		{"gray 4096x4096, default", pngHeaderOf(4096, 4096, 8, 0), 0, ErrImageUndecoded},
		{"16-bit RGBA 2896x2896: 67094528 bytes", pngHeaderOf(2896, 2896, 16, 6), 0, ErrImageUndecoded},
		{"16-bit RGBA 2897x2897: 67140872 bytes", pngHeaderOf(2897, 2897, 16, 6), 0, ErrImageTooLarge},
		{"16-bit gray 2897x2897 (tRNS may make it NRGBA64)", pngHeaderOf(2897, 2897, 16, 0), 0, ErrImageTooLarge},
		{"JPEG YCbCr 4096x4096, default", jpegHeader(4096, 4096), 0, ErrImageUndecoded},
		{"budget past MaxImagePixels is capped", pngHeader(10001, 10001), 1 << 40, ErrImageTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeImageWithin(bytes.NewReader(tt.file), tt.maxPixels); !errors.Is(err, tt.want) {
				t.Errorf("got %v; want %v", err, tt.want)
			}
		})
	}
}

// encode16 is a w×h 16-bit RGBA PNG of one colour: a few KB for megabytes of pixels.
func encode16(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA64(x, y, color.NRGBA64{R: 0x1234, G: 0x5678, B: 0x9abc, A: 0xffff})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A 16-bit PNG of deepSide² pixels fits a budget of deepBudget pixels by its square but decodes to 8 bytes
// a pixel, more than the budget's 4.
const deepSide, deepBudget = 700, 1 << 19

// TestImageBudgetRefusesBeforeDecoding: the 16-bit PNG is refused on its header, allocating a small
// fraction of its decoded size; twice the budget lets it in.
func TestImageBudgetRefusesBeforeDecoding(t *testing.T) {
	const w, h, budget = deepSide, deepSide, deepBudget
	file := encode16(t, w, h)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeImageWithin(bytes.NewReader(file), budget)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrImageTooLarge) {
		t.Errorf("got %v; want ErrImageTooLarge", err)
	}
	if got, decoded := after.TotalAlloc-before.TotalAlloc, uint64(8*w*h); got > decoded/16 {
		t.Errorf("allocated %d bytes to refuse it; want at most %d, 1/16 of its %d decoded bytes", got, decoded/16, decoded)
	}
	if _, err := DecodeImageWithin(bytes.NewReader(file), 2*budget); err != nil {
		t.Errorf("with twice the budget: got %v; want it decoded", err)
	}
}

// TestLoaderCountsImageOverBudget: through the loader (Check), the 16-bit image is a bad sample under
// ImageMaxPixels = deepBudget and a good one under the default.
func TestLoaderCountsImageOverBudget(t *testing.T) {
	f := newFixture(t, 0)
	writeFile(t, filepath.Join(f.folder, "deep.png"), encode16(t, deepSide, deepSide))
	f.records = []fixtureRecord{
		{ID: "deep", Image: "deep.png", Conversations: conv("<image>\nq", "a")},
		{ID: "text", Conversations: conv("q", "a")},
	}
	f.write(t, f.data, false)
	for _, tt := range []struct {
		maxPixels int64
		bad       int
	}{{deepBudget, 1}, {0, 0}} {
		o := f.options(t)
		o.ImageMaxPixels = tt.maxPixels
		c, err := Check(t.Context(), o)
		if err != nil || c.Bad[ReasonTooLarge] != tt.bad || c.Samples != 2-tt.bad {
			t.Errorf("image_max_pixels %d: got %+v, %v; want %d image_too_large", tt.maxPixels, c, err, tt.bad)
		}
	}
}
