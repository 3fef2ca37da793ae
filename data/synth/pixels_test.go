package synth

import (
	"fmt"
	"image"
	"image/color"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// These tests read the generated PNGs back and check that each answer is what the image shows.

func colourByName(name string) (color.RGBA, bool) {
	for _, c := range palette {
		if c.name == name {
			return c.rgb, true
		}
	}
	return color.RGBA{}, false
}

// slot returns the word a question template puts in place of %s.
func slot(question, template string) string {
	q := strings.SplitN(strings.TrimPrefix(question, "<image>\n"), "\n", 2)[0]
	pre, post, _ := strings.Cut(template, "%s")
	return strings.TrimSuffix(strings.TrimPrefix(q, pre), post)
}

// classify names the shape whose pixels (mask[y][x]) fill a box, from the share of the box it covers and
// the share of its top, middle and bottom rows.
func classify(mask [][]bool) string {
	row := func(y int) float64 { return share(mask[y : y+1]) }
	area, top, mid, bottom := share(mask), row(0), row(len(mask)/2), row(len(mask)-1)
	switch {
	case area == 1:
		return "square"
	case area > 0.7 && area < 0.85 && top < 0.6:
		return "circle"
	case bottom > 0.9 && top < 0.2:
		return "triangle"
	case area > 0.4 && area < 0.6 && bottom < 0.2 && mid > 0.9:
		return "diamond"
	case top > 0.2 && top < 0.45 && mid == 1:
		return "cross"
	}
	return fmt.Sprintf("unknown (area %.2f, rows %.2f %.2f %.2f)", area, top, mid, bottom)
}

func share(mask [][]bool) float64 {
	n, on := 0, 0
	for _, row := range mask {
		for _, v := range row {
			n++
			if v {
				on++
			}
		}
	}
	return float64(on) / float64(n)
}

// maskOf marks the pixels of box that have (want) or lack (!want) colour c.
func maskOf(img *image.RGBA, box image.Rectangle, c color.RGBA, want bool) [][]bool {
	mask := make([][]bool, box.Dy())
	for y := range mask {
		mask[y] = make([]bool, box.Dx())
		for x := range mask[y] {
			mask[y][x] = (img.RGBAAt(box.Min.X+x, box.Min.Y+y) == c) == want
		}
	}
	return mask
}

func TestShapeAndColourAnswers(t *testing.T) {
	m := sharedDataset(t)
	seen := map[string]bool{}
	for _, r := range readRecords(t, m.Train) {
		var colour, shape string
		switch r.Task {
		case "color":
			colour, shape = r.Answer(), slot(r.Conversations[0].Value, askColour)
		case "shape":
			colour, shape = slot(r.Conversations[0].Value, askShape), r.Answer()
		default:
			continue
		}
		c, ok := colourByName(colour)
		if !ok {
			t.Errorf("%s: colour %q is not in the palette", r.ID, colour)
			continue
		}
		img := loadPNG(t, filepath.Join(m.ImageFolder, r.Image))
		box := image.Rect(r.Box[0], r.Box[1], r.Box[2], r.Box[3])
		if got := classify(maskOf(img, box, c, true)); got != shape {
			t.Errorf("%s: the %s pixels in box %v form a %s; want a %s", r.ID, colour, r.Box, got, shape)
		}
		seen[shape] = true
	}
	if len(seen) != len(shapes) {
		t.Errorf("shapes asked about: %v; want all of %v", seen, shapes)
	}
}

// referenceInk renders text with the 7×13 font at scale 1 and returns its ink as rows of booleans, cropped.
func referenceInk(text string) [][]bool {
	img := image.NewAlpha(image.Rect(0, 0, 7*len(text), 13))
	d := font.Drawer{Dst: img, Src: image.Opaque, Face: basicfont.Face7x13, Dot: fixed.P(0, 11)}
	d.DrawString(text)
	return crop(func(x, y int) bool { return img.AlphaAt(x, y).A != 0 }, img.Rect)
}

// crop returns the smallest rows×columns block of r that holds every point where on is true.
func crop(on func(x, y int) bool, r image.Rectangle) [][]bool {
	var ink image.Rectangle
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if on(x, y) {
				ink = ink.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	out := make([][]bool, ink.Dy())
	for y := range out {
		out[y] = make([]bool, ink.Dx())
		for x := range out[y] {
			out[y][x] = on(ink.Min.X+x, ink.Min.Y+y)
		}
	}
	return out
}

// shrink undoes a magnification by scale, failing when the blocks are not uniform.
func shrink(ink [][]bool, scale int) ([][]bool, bool) {
	if len(ink)%scale != 0 || len(ink[0])%scale != 0 {
		return nil, false
	}
	out := make([][]bool, len(ink)/scale)
	for y := range out {
		out[y] = make([]bool, len(ink[0])/scale)
		for x := range out[y] {
			out[y][x] = ink[y*scale][x*scale]
		}
	}
	for y := range ink {
		for x := range ink[y] {
			if ink[y][x] != out[y/scale][x/scale] {
				return nil, false
			}
		}
	}
	return out, true
}

func TestSignsShowTheAnswer(t *testing.T) {
	m := sharedDataset(t)
	o := testOptions("")
	heights := map[string]map[string]int{KindSmall: {}, KindLarge: {}} // kind → single-character answer → ink height
	for _, r := range readRecords(t, m.Train) {
		if r.Task != "read" {
			continue
		}
		img := loadPNG(t, filepath.Join(m.ImageFolder, r.Image))
		box := image.Rect(r.Box[0], r.Box[1], r.Box[2], r.Box[3])
		fill := img.RGBAAt(box.Min.X, box.Min.Y)
		if want, _ := colourByName(slot(r.Conversations[0].Value, askRead)); fill != want {
			t.Errorf("%s: sign colour %v; want the %s of the question, %v", r.ID, fill, slot(r.Conversations[0].Value, askRead), want)
		}
		ink := crop(func(x, y int) bool { return img.RGBAAt(x, y) != fill }, box)
		scale := map[string]int{KindSmall: 1, KindLarge: o.Zoom}[r.Kind]
		glyph, ok := shrink(ink, scale)
		if !ok || fmt.Sprint(glyph) != fmt.Sprint(referenceInk(r.Answer())) {
			t.Errorf("%s: the %s sign does not show %q at scale %d", r.ID, r.Kind, r.Answer(), scale)
		}
		if len(r.Answer()) == 1 {
			heights[r.Kind][r.Answer()] = len(ink)
		}
	}
	compared := 0
	for ch, hl := range heights[KindLarge] {
		if hs, ok := heights[KindSmall][ch]; ok {
			compared++
			if hl != o.Zoom*hs {
				t.Errorf("%q: large glyph %d pixels high, small %d; want large = %d × small", ch, hl, hs, o.Zoom)
			}
		}
	}
	if compared < 3 {
		t.Errorf("only %d characters appear both small and large; want at least 3 to compare heights", compared)
	}
}
