package synth

import (
	"image"
	"image/color"
	"image/draw"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Text is drawn with the 7×13 bitmap font of x/image, magnified by whole pixels: a glyph at scale s is the
// 1-scale glyph with every pixel an s×s block. A large sign (scale Z) is therefore exactly a small sign
// (scale 1) magnified Z times, and the LR view (the image shrunk Z times) shows a large glyph at about the
// pixel size that an S×S HR crop shows a small one. Cap height at scale 1 is 9 pixels: 3 LR pixels at Z = 3,
// too few to read.
var face = basicfont.Face7x13

// signPad is the margin between a sign's edge and its ink, in scale-1 pixels.
const signPad = 2

// inkMask renders text at scale 1 and crops it to its ink: the result's bounds start at (0, 0) and every
// row and column holds at least one inked pixel (an empty text gives an empty mask).
func inkMask(text string) *image.Alpha {
	m := face.Metrics()
	w, h := len(text)*face.Advance, (m.Ascent + m.Descent).Ceil()
	full := image.NewAlpha(image.Rect(0, 0, w, h))
	d := font.Drawer{Dst: full, Src: image.Opaque, Face: face, Dot: fixed.P(0, m.Ascent.Ceil())}
	d.DrawString(text)
	ink := inkBounds(full)
	out := image.NewAlpha(image.Rect(0, 0, ink.Dx(), ink.Dy()))
	draw.Draw(out, out.Rect, full, ink.Min, draw.Src)
	return out
}

// inkBounds is the smallest rectangle holding every non-zero pixel of m.
func inkBounds(m *image.Alpha) image.Rectangle {
	var r image.Rectangle
	for y := m.Rect.Min.Y; y < m.Rect.Max.Y; y++ {
		for x := m.Rect.Min.X; x < m.Rect.Max.X; x++ {
			if m.AlphaAt(x, y).A != 0 {
				r = r.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	return r
}

// drawInk paints the mask at p, each mask pixel as a scale×scale block.
func drawInk(img *image.RGBA, ink *image.Alpha, p image.Point, scale int, c color.RGBA) {
	for y := range ink.Rect.Dy() {
		for x := range ink.Rect.Dx() {
			if ink.AlphaAt(x, y).A != 0 {
				fillRect(img, image.Rect(p.X+x*scale, p.Y+y*scale, p.X+(x+1)*scale, p.Y+(y+1)*scale), c)
			}
		}
	}
}

// signSize is the size of a sign that shows ink at the given scale.
func signSize(ink *image.Alpha, scale int) image.Point {
	return image.Pt((ink.Rect.Dx()+2*signPad)*scale, (ink.Rect.Dy()+2*signPad)*scale)
}

// drawSign paints a sign (a filled rectangle with the text centred by its padding) with its top-left at p.
// The text is black on light signs and white on dark ones.
func drawSign(img *image.RGBA, ink *image.Alpha, p image.Point, scale int, fill color.RGBA) {
	fillRect(img, image.Rectangle{p, p.Add(signSize(ink, scale))}, fill)
	drawInk(img, ink, p.Add(image.Pt(signPad*scale, signPad*scale)), scale, textColour(fill))
}

// textColour picks black or white, whichever contrasts more with the sign's fill (Rec. 601 luma).
func textColour(fill color.RGBA) color.RGBA {
	luma := (299*int(fill.R) + 587*int(fill.G) + 114*int(fill.B)) / 1000
	if luma > 140 {
		return color.RGBA{0, 0, 0, 255}
	}
	return color.RGBA{255, 255, 255, 255}
}

// largestSign is the longest side of any large sign at the given zoom.
func largestSign(zoom int) int {
	side := 0
	for _, t := range append(append([]string(nil), digits...), letters...) {
		sz := signSize(inkMask(t), zoom)
		side = max(side, sz.X, sz.Y)
	}
	return side
}
