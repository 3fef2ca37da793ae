package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestResolveImage(t *testing.T) {
	dir := t.TempDir()
	folder := filepath.Join(dir, "images")
	writeImage(t, folder, "coco/a.jpg", fixtureImage(4, 4, 1))
	writeImage(t, folder, "ocr/b.png", fixtureImage(4, 4, 2))
	writeImage(t, dir, "secret.png", fixtureImage(4, 4, 3))
	for _, l := range [][2]string{{"../secret.png", "escape.png"}, {"coco/a.jpg", "inside.jpg"}} {
		if err := os.Symlink(l[0], filepath.Join(folder, l[1])); err != nil {
			t.Skipf("symlinks unavailable: %v", err)
		}
	}
	tests := []struct {
		rel, want string // want: path under folder, or "" for an error
		err       error
	}{
		{"coco/a.jpg", "coco/a.jpg", nil},
		{"./coco//a.jpg", "coco/a.jpg", nil},
		{"ocr/b.jpg", "ocr/b.png", nil}, // extension fallback
		{"ocr/b.gif", "ocr/b.png", nil},
		{"ocr/b", "ocr/b.png", nil},
		{"coco/none.jpg", "", ErrImageMissing},
		{"../secret.png", "", ErrImageOutside},
		{"coco/../../secret.png", "", ErrImageOutside},
		{"/etc/passwd", "", ErrImageOutside},
		{filepath.Join(dir, "secret.png"), "", ErrImageOutside},
		{"escape.png", "", ErrImageOutside}, // a symlink leading out
		{"inside.jpg", "inside.jpg", nil},   // a symlink staying in
		{"coco", "", ErrImageMissing},       // a directory is no image
		{"", "", ErrImageOutside},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			got, err := ResolveImage(folder, tt.rel)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("got %q, %v; want %v", got, err, tt.err)
				}
				return
			}
			if want := filepath.Join(folder, tt.want); err != nil || got != want {
				t.Errorf("got %q, %v; want %q", got, err, want)
			}
		})
	}
}

// pngHeader is a PNG signature and IHDR chunk declaring w×h 8-bit RGB pixels, then an empty IDAT.
func pngHeader(w, h uint32) []byte { return pngHeaderOf(w, h, 8, 2) }

// pngHeaderOf is pngHeader with the bit depth and the colour type (0 gray, 2 RGB, 6 RGBA) given.
func pngHeaderOf(w, h uint32, depth, colorType byte) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, w), h)
	chunk("IHDR", append(ihdr, depth, colorType, 0, 0, 0))
	chunk("IDAT", nil)
	return b.Bytes()
}

// jpegHeader is an SOI, a JFIF APP0 and a baseline SOF0 declaring w×h, 3 components.
func jpegHeader(w, h uint16) []byte {
	b := []byte{0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}
	b = append(b, 0xff, 0xc0, 0, 17, 8)
	b = binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, h), w)
	return append(b, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1)
}

func TestDecodeRefusesAbsurdDimensions(t *testing.T) {
	tests := []struct {
		name string
		file []byte
		err  error
	}{
		{"png 100000x100000", pngHeader(100000, 100000), ErrImageTooLarge},
		{"png 16385x1", pngHeader(MaxImageSide+1, 1), ErrImageTooLarge},
		{"png 12000x12000 (144 Mpx)", pngHeader(12000, 12000), ErrImageTooLarge},
		{"jpeg 65535x65535", jpegHeader(65535, 65535), ErrImageTooLarge},
		{"png 0x5", pngHeader(0, 5), ErrImageUndecoded},
		{"not an image", []byte("GIF89a?"), ErrImageUndecoded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := DecodeImage(bytes.NewReader(tt.file))
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tt.err) {
				t.Errorf("got %v; want %v", err, tt.err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
				t.Errorf("allocated %d bytes before refusing; want < 1 MiB", got)
			}
		})
	}
}

func TestDecodeFormats(t *testing.T) {
	src := fixtureImage(9, 7, 4)
	var jp, gf bytes.Buffer
	if err := jpeg.Encode(&jp, src, nil); err != nil {
		t.Fatal(err)
	}
	if err := gif.EncodeAll(&gf, &gif.GIF{Image: []*image.Paletted{paletted(9, 7, 1), paletted(9, 7, 2)}, Delay: []int{0, 0}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		file []byte
		err  error
	}{
		{"jpeg", jp.Bytes(), nil},
		{"gif, first frame", gf.Bytes(), nil},
		{"truncated jpeg", jp.Bytes()[:jp.Len()/2], ErrImageUndecoded},
		{"truncated png", pngHeader(9, 7), ErrImageUndecoded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := DecodeImage(bytes.NewReader(tt.file))
			if !errors.Is(err, tt.err) {
				t.Fatalf("got %v; want %v", err, tt.err)
			}
			if err == nil && img.Bounds().Size() != image.Pt(9, 7) {
				t.Errorf("size: got %v; want 9x7", img.Bounds().Size())
			}
		})
	}
}

func paletted(w, h int, c uint8) *image.Paletted {
	img := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White, color.RGBA{200, 0, 0, 255}})
	for i := range img.Pix {
		img.Pix[i] = c
	}
	return img
}

func TestPadToSquareGeometry(t *testing.T) {
	red := color.RGBA{255, 0, 0, 255}
	tests := []struct {
		w, h         int
		side, x0, y0 int // square side and where the image lands: expand2square's (side−w)//2, (side−h)//2
	}{
		{4, 2, 4, 0, 1},
		{2, 5, 5, 1, 0},
		{3, 6, 6, 1, 0},
		{5, 5, 5, 0, 0},
		{1, 4, 4, 1, 0},
	}
	for _, tt := range tests {
		src := image.NewRGBA(image.Rect(10, 20, 10+tt.w, 20+tt.h)) // a non-zero origin must not matter
		for i := 0; i < len(src.Pix); i += 4 {
			copy(src.Pix[i:], []uint8{red.R, red.G, red.B, red.A})
		}
		sq := PadToSquare(src)
		if got := sq.Bounds(); got != image.Rect(0, 0, tt.side, tt.side) {
			t.Fatalf("%dx%d: bounds %v; want side %d", tt.w, tt.h, got, tt.side)
		}
		for y := range tt.side {
			for x := range tt.side {
				inside := x >= tt.x0 && x < tt.x0+tt.w && y >= tt.y0 && y < tt.y0+tt.h
				want := padColor
				if inside {
					want = red
				}
				if got := sq.RGBAAt(x, y); got != want {
					t.Errorf("%dx%d: pixel (%d,%d) = %v; want %v", tt.w, tt.h, x, y, got, want)
				}
			}
		}
	}
}

func TestPadToSquareDropsAlpha(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	src.SetNRGBA(0, 0, color.NRGBA{200, 100, 50, 0}) // fully transparent: PIL's convert("RGB") keeps the colour
	if got, want := PadToSquare(src).RGBAAt(0, 0), (color.RGBA{200, 100, 50, 255}); got != want {
		t.Errorf("got %v; want %v", got, want)
	}
}

func TestAATapsByHand(t *testing.T) {
	// in 6 → out 2 (Z = 3): centre 1.5, support 3: taps x=0..4 at |x+0.5−1.5|/3 → 2/3, 1, 2/3, 1/3, 0,
	// sum 8/3; output 1 mirrors it.
	// in 9 → out 3: the interior output 1 (centre 4.5) has taps x=2..7 → 1/3, 2/3, 1, 2/3, 1/3, 0, sum 3.
	tests := []struct {
		in, out, i int
		first      int
		w          []float64
	}{
		{6, 2, 0, 0, []float64{1.0 / 4, 3.0 / 8, 1.0 / 4, 1.0 / 8, 0}},
		{6, 2, 1, 2, []float64{1.0 / 8, 1.0 / 4, 3.0 / 8, 1.0 / 4}},
		{9, 3, 1, 2, []float64{1.0 / 9, 2.0 / 9, 3.0 / 9, 2.0 / 9, 1.0 / 9, 0}},
		// in 4 → out 2 (Z = 2): centre 1, support 2: x=0..2 at |x+0.5−1|/2 → 3/4, 3/4, 1/4, sum 7/4.
		{4, 2, 0, 0, []float64{3.0 / 7, 3.0 / 7, 1.0 / 7}},
		// no resize: support 1, centre 2.5: x=2, 3 at |x+0.5−2.5| → 1, 0.
		{4, 4, 2, 2, []float64{1, 0}},
	}
	for _, tt := range tests {
		got := aaTaps(tt.in, tt.out)[tt.i]
		if got.first != tt.first || len(got.w) != len(tt.w) {
			t.Errorf("%d→%d out %d: first %d, %d taps; want %d, %d", tt.in, tt.out, tt.i, got.first, len(got.w), tt.first, len(tt.w))
			continue
		}
		for j, w := range tt.w {
			if math.Abs(float64(got.w[j])-w) > 1e-7 {
				t.Errorf("%d→%d out %d tap %d: got %g; want %g", tt.in, tt.out, tt.i, j, got.w[j], w)
			}
		}
	}
}

func TestDownsampleAAByHand(t *testing.T) {
	// v(y, x) = x + 10y on a 6×6 plane, Z = 3. The taps of TestAATapsByHand give along a line
	// 0·1/4 + 1·3/8 + 2·1/4 + 3·1/8 = 1.25 and 2·1/8 + 3·1/4 + 4·3/8 + 5·1/4 = 3.75; the filter is linear
	// and separable, so out(y, x) = o(x) + 10·o(y). The second channel is the negative.
	src := make([]float32, 2*36)
	for y := range 6 {
		for x := range 6 {
			src[y*6+x] = float32(x + 10*y)
			src[36+y*6+x] = -float32(x + 10*y)
		}
	}
	want := []float32{13.75, 16.25, 38.75, 41.25, -13.75, -16.25, -38.75, -41.25}
	got := DownsampleAA(src, 2, 6, 3)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Errorf("out[%d] = %g; want %g", i, got[i], want[i])
		}
	}
}

func TestPreprocessImageConstant(t *testing.T) {
	// A uniform image in the pad colour stays uniform: every HR and LR value is (v/255 − mean)/std.
	src := image.NewRGBA(image.Rect(0, 0, 7, 3))
	for i := 0; i < len(src.Pix); i += 4 {
		copy(src.Pix[i:], []uint8{padColor.R, padColor.G, padColor.B, 255})
	}
	px, err := PreprocessImage(src, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(px.HR) != 3*24*24 || len(px.LR) != 3*8*8 || px.OriSize != [2]int{7, 3} {
		t.Fatalf("shapes: HR %d, LR %d, ori %v; want %d, %d, [7 3]", len(px.HR), len(px.LR), px.OriSize, 3*24*24, 3*8*8)
	}
	v := [3]float64{122, 116, 104}
	for c := range 3 {
		want := (v[c]/255 - float64(clipMean[c])) / float64(clipStd[c])
		for _, p := range []struct {
			name string
			t    []float32
			n    int
		}{{"HR", px.HR, 24 * 24}, {"LR", px.LR, 8 * 8}} {
			for i, x := range p.t[c*p.n : (c+1)*p.n] {
				if math.Abs(float64(x)-want) > 1e-5 {
					t.Fatalf("%s channel %d value %d: got %g; want %g", p.name, c, i, x, want)
				}
			}
		}
	}
}

func TestPreprocessImageGeometry(t *testing.T) {
	// An 8×16 image, black in columns 0–3 and white in 4–7, padded to 16×16 at x = 4: source columns 0–3
	// pad, 4–7 black, 8–11 white, 12–15 pad. Upscaled ×2 (S = 16, Z = 2) an HR column x samples source
	// (x+0.5)/2 − 0.5 with the Catmull-Rom taps on the 4 nearest columns, so x = 0, 11, 19, 27 see one
	// colour only and keep it exactly.
	src := image.NewRGBA(image.Rect(0, 0, 8, 16))
	for y := range 16 {
		for x := range 8 {
			v := uint8(255 * (x / 4))
			src.SetRGBA(x, y, color.RGBA{v, v, v, 255})
		}
	}
	px, err := PreprocessImage(src, 16, 2)
	if err != nil {
		t.Fatal(err)
	}
	const side = 32
	for _, c := range []struct{ x, v int }{{0, 122}, {11, 0}, {19, 255}, {27, 122}, {31, 122}} {
		for y := range side {
			got := float64(px.HR[y*side+c.x])*float64(clipStd[0]) + float64(clipMean[0])
			if want := float64(c.v) / 255; math.Abs(got-want) > 1e-6 {
				t.Fatalf("HR red at (%d,%d): %g; want %g", c.x, y, got, want)
			}
		}
	}
	if px.OriSize != [2]int{8, 16} {
		t.Errorf("ori size %v; want [8 16]", px.OriSize)
	}
}

// FuzzDecodeImage feeds arbitrary bytes to the image path: an error or an image within the limits, never
// a panic or a huge allocation.
func FuzzDecodeImage(f *testing.F) {
	var jp bytes.Buffer
	jpeg.Encode(&jp, fixtureImage(8, 6, 1), nil)
	f.Add(jp.Bytes())
	f.Add(pngHeader(3, 2))
	f.Add(jpegHeader(2, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := DecodeImage(bytes.NewReader(b))
		if err != nil {
			return
		}
		if s := img.Bounds().Size(); s.X > MaxImageSide || s.Y > MaxImageSide || s.X*s.Y > MaxImagePixels {
			t.Fatalf("decoded %v past the limits", s)
		}
		if s := img.Bounds().Size(); s.X*s.Y <= 1<<16 {
			if _, err := PreprocessImage(img, 8, 2); err != nil {
				t.Fatalf("preprocess a decoded %v image: %v", s, err)
			}
		}
	})
}

// TestDenormalizeRoundTrip: every 8-bit value of every channel survives Normalize then Denormalize.
func TestDenormalizeRoundTrip(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for i := 0; i < 256; i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = uint8(i), uint8(255-i), uint8(i*7), 255
	}
	got := Denormalize(Normalize(img), 16)
	if !bytes.Equal(got.Pix, img.Pix) {
		for i := range img.Pix {
			if got.Pix[i] != img.Pix[i] {
				t.Fatalf("byte %d (pixel %d channel %d): %d after the round trip; want %d", i, i/4, i%4, got.Pix[i], img.Pix[i])
			}
		}
	}
}
