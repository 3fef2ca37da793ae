package synth

import (
	"image"
	"image/color"
)

// The drawing below is integer-only and aliased on purpose: every platform and Go version draws the same
// bytes, and the loader's antialiased downsampling to the LR view smooths the edges anyway.

// named is a colour that questions and answers use by name.
type named struct {
	name string
	rgb  color.RGBA
}

// palette holds the object colours: saturated or extreme, far from the muted background so that an object's
// colour is unambiguous even in the LR view. No two are confusable after a 3× blur.
var palette = []named{
	{"red", color.RGBA{220, 30, 30, 255}},
	{"green", color.RGBA{30, 170, 50, 255}},
	{"blue", color.RGBA{30, 70, 230, 255}},
	{"yellow", color.RGBA{245, 225, 30, 255}},
	{"orange", color.RGBA{250, 135, 20, 255}},
	{"purple", color.RGBA{135, 40, 190, 255}},
	{"pink", color.RGBA{250, 140, 205, 255}},
	{"cyan", color.RGBA{30, 215, 230, 255}},
	{"brown", color.RGBA{125, 70, 25, 255}},
	{"white", color.RGBA{250, 250, 250, 255}},
	{"black", color.RGBA{15, 15, 15, 255}},
}

// shapes are the large-object shapes, in the order of the shape* constants.
var shapes = []string{"circle", "square", "triangle", "diamond", "cross"}

const (
	shapeCircle = iota
	shapeSquare
	shapeTriangle
	shapeDiamond
	shapeCross
)

// inShape says whether the point (u, v) lies in the shape that fills a d×d box. u and v are doubled
// coordinates from the box centre (u = 2·dx + 1 − d for pixel column dx), so each test is exact in integers.
func inShape(shape, u, v, d int) bool {
	abs := func(a int) int { return max(a, -a) }
	switch shape {
	case shapeCircle:
		return u*u+v*v <= d*d
	case shapeTriangle: // apex up: the half-width grows from 0 at the top to d/2 at the base
		return 2*abs(u) <= v+d
	case shapeDiamond:
		return abs(u)+abs(v) <= d
	case shapeCross: // arms a third of the side thick
		return 3*abs(u) <= d || 3*abs(v) <= d
	}
	return true // square
}

// fillShape paints a shape of side d with its top-left corner at p.
func fillShape(img *image.RGBA, shape int, p image.Point, d int, c color.RGBA) {
	for dy := range d {
		for dx := range d {
			if inShape(shape, 2*dx+1-d, 2*dy+1-d, d) {
				set(img, p.X+dx, p.Y+dy, c)
			}
		}
	}
}

// set paints one pixel, ignoring points outside the image.
func set(img *image.RGBA, x, y int, c color.RGBA) {
	if !(image.Point{x, y}).In(img.Rect) {
		return
	}
	i := img.PixOffset(x, y)
	img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
}

// fillRect paints r (clipped to the image).
func fillRect(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Rect)
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			set(img, x, y, c)
		}
	}
}

// gradient fills the image with a linear blend from c0 to c1 along the direction (dx, dy).
func gradient(img *image.RGBA, c0, c1 color.RGBA, dx, dy int) {
	b := img.Rect
	proj := func(x, y int) int { return x*dx + y*dy }
	lo, hi := proj(b.Min.X, b.Min.Y), proj(b.Min.X, b.Min.Y)
	for _, p := range []image.Point{{b.Max.X, b.Min.Y}, {b.Min.X, b.Max.Y}, b.Max} {
		lo, hi = min(lo, proj(p.X, p.Y)), max(hi, proj(p.X, p.Y))
	}
	span := hi - lo + 1
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			t := (proj(x, y) - lo) * 256 / span // 0…255
			set(img, x, y, blend(c0, c1, t))
		}
	}
}

// blend mixes a and b with weight t/256 on b.
func blend(a, b color.RGBA, t int) color.RGBA {
	mixc := func(p, q uint8) uint8 { return uint8((int(p)*(256-t) + int(q)*t) >> 8) }
	return color.RGBA{mixc(a.R, b.R), mixc(a.G, b.G), mixc(a.B, b.B), 255}
}

// addNoise adds grey noise in [−amp, amp] to the image, one offset per 2×2 block and the same on all three
// channels: luminance grain, coarse enough that PNG still compresses it (per-pixel colour noise would
// double the files) and that cannot shift an object's hue.
func addNoise(img *image.RGBA, r *rng, amp int) {
	b := img.Rect
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			n := r.between(-amp, amp)
			for _, p := range [4]image.Point{{x, y}, {x + 1, y}, {x, y + 1}, {x + 1, y + 1}} {
				if p.In(b) {
					i := img.PixOffset(p.X, p.Y)
					for c := range 3 {
						img.Pix[i+c] = clamp8(int(img.Pix[i+c]) + n)
					}
				}
			}
		}
	}
}

func clamp8(v int) uint8 { return uint8(min(max(v, 0), 255)) }

// ring paints the outline of a circle of diameter d, t pixels thick.
func ring(img *image.RGBA, p image.Point, d, t int, c color.RGBA) {
	in := max(d-2*t, 0)
	for dy := range d {
		for dx := range d {
			u, v := 2*dx+1-d, 2*dy+1-d
			if q := u*u + v*v; q <= d*d && q > in*in {
				set(img, p.X+dx, p.Y+dy, c)
			}
		}
	}
}

// frame paints the outline of r, t pixels thick.
func frame(img *image.RGBA, r image.Rectangle, t int, c color.RGBA) {
	fillRect(img, image.Rect(r.Min.X, r.Min.Y, r.Max.X, r.Min.Y+t), c)
	fillRect(img, image.Rect(r.Min.X, r.Max.Y-t, r.Max.X, r.Max.Y), c)
	fillRect(img, image.Rect(r.Min.X, r.Min.Y, r.Min.X+t, r.Max.Y), c)
	fillRect(img, image.Rect(r.Max.X-t, r.Min.Y, r.Max.X, r.Max.Y), c)
}

// line paints a one-pixel line from a to b (Bresenham).
func line(img *image.RGBA, a, b image.Point, c color.RGBA) {
	dx, dy := max(b.X-a.X, a.X-b.X), -max(b.Y-a.Y, a.Y-b.Y)
	sx, sy := sign(b.X-a.X), sign(b.Y-a.Y)
	e := dx + dy
	for {
		set(img, a.X, a.Y, c)
		if a == b {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			a.X += sx
		}
		if e2 <= dx {
			e += dx
			a.Y += sy
		}
	}
}

func sign(v int) int {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}
