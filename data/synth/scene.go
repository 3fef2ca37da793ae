package synth

import (
	"fmt"
	"image"
	"image/color"
	"slices"
)

// Sample kinds, as written in each record's "kind" field.
const (
	KindSmall = "small" // a question about small text: unreadable in the LR view, readable in the HR view
	KindLarge = "large" // a question about a large object: answerable from the LR view alone
	KindText  = "text"  // a text-only question, no image
)

// object is one thing a question may be about: a filled shape or a sign with text.
type object struct {
	sign   bool
	shape  int          // shapes index (shapes only)
	colour int          // palette index
	ink    *image.Alpha // the sign's text at scale 1 (signs only)
	text   string       // the sign's text (signs only)
	scale  int          // 1 (small sign) or Z (large sign)
	size   image.Point  // box size
	box    image.Rectangle
}

// tags are the object's tags (Record.Tags).
func (o *object) tags() map[string]string {
	t := map[string]string{"color": palette[o.colour].name, "object": "sign"}
	switch {
	case !o.sign:
		t["object"] = shapes[o.shape]
	case o.scale > 1:
		t["text"] = o.text
	}
	return t
}

// question is what an image sample asks, about which object.
type question struct {
	task, text, answer string
	target             *object
}

// scene is one image under construction: its size, its objects and the colours and shapes already taken
// (each colour names one object, each shape one large shape, so every question has one answer).
type scene struct {
	w, h    int
	zoom    int
	snap    int         // Options.Snap: signs' ink on a grid of snap·scale pixels of the padded square; 0 off
	pad     image.Point // data.SquareOffset: where the loader puts the image's top-left corner in its square
	centre  bool        // the first object placed (the question's target) goes to the image's centre
	objects []*object
	colours map[int]bool
	shapes  map[int]bool
}

// imageSize draws the image's size: the long side is hr, the short side a random fraction of it in
// [minAspect, 1], one image in five square; landscape and portrait are equally likely.
func imageSize(r *rng, hr int, minAspect float64) (w, h int) {
	short := hr
	if !r.chance(1, 5) {
		lo := int(minAspect*float64(hr) + 0.5)
		short = r.between(lo, hr)
	}
	if r.chance(1, 2) {
		return hr, short
	}
	return short, hr
}

// newObject draws a fresh colour (and, for a shape, a fresh shape) for the scene.
func (s *scene) newObject(r *rng, sign bool) *object {
	o := &object{sign: sign, colour: s.fresh(r, len(palette), s.colours)}
	if !sign {
		o.shape = s.fresh(r, len(shapes), s.shapes)
	}
	return o
}

// fresh draws an index in [0, n) not yet in used and marks it (-1 when all are taken).
func (s *scene) fresh(r *rng, n int, used map[int]bool) int {
	free := make([]int, 0, n)
	for i := range n {
		if !used[i] {
			free = append(free, i)
		}
	}
	if len(free) == 0 {
		return -1
	}
	i := pick(r, free)
	used[i] = true
	return i
}

// shapeSide draws a large shape's side: between a fifth and a third of the short image side, and at least
// 6 LR pixels so that its shape survives the LR view.
func (s *scene) shapeSide(r *rng) int {
	short := min(s.w, s.h)
	lo := max(short/5, 6*s.zoom)
	return r.between(lo, max(lo, short/3))
}

// withSign makes o a sign showing text at the given scale.
func (o *object) withSign(text string, scale int) *object {
	o.text, o.scale, o.ink = text, scale, inkMask(text)
	o.size = signSize(o.ink, scale)
	return o
}

// place puts o at a random free spot (a 2-pixel gap from every other object, 1 pixel from the edge) and
// reports whether it found one.
func (s *scene) place(r *rng, o *object) bool { return s.placeIn(r, o, image.Rect(0, 0, s.w, s.h)) }

// placeIn puts o at a random free spot inside area (1 pixel from its edges, on the snap grid for a sign when
// Snap is set), as place does for the whole image, and reports whether it found one in a few tries.
func (s *scene) placeIn(r *rng, o *object, area image.Rectangle) bool {
	if o.colour < 0 || (!o.sign && o.shape < 0) {
		return false
	}
	for range 50 {
		x, y := r.between(area.Min.X+1, area.Max.X-o.size.X-1), r.between(area.Min.Y+1, area.Max.Y-o.size.Y-1)
		if o.sign && s.snap > 0 {
			x, y = s.snapped(r, o, area)
		}
		if s.centre && len(s.objects) == 0 {
			x, y = s.centred(o)
		}
		box := image.Rect(x, y, x+o.size.X, y+o.size.Y)
		if box.In(area.Inset(1)) && s.free(box) {
			o.box = box
			s.objects = append(s.objects, o)
			return true
		}
	}
	return false
}

// snapped draws a top-left corner in area for sign o that puts its ink's top-left corner on the grid of
// snap·scale pixels of the padded square: a large sign's ink then starts on an LR patch boundary and a
// small one's on an HR patch boundary (snap = the patch size), so that the tower sees both glyphs in the
// same place within a patch. A sign with no grid position inside area gets -1 (no room).
func (s *scene) snapped(r *rng, o *object, area image.Rectangle) (x, y int) {
	unit, ink := s.snap*o.scale, signPad*o.scale
	axis := func(pad, lo, hi, size int) int {
		first := ceilDiv(lo+1+ink+pad, unit)      // x ≥ lo + 1
		last := floorDiv(hi-size-1+ink+pad, unit) // x + size ≤ hi − 1
		if last < first {
			return -1
		}
		return r.between(first, last)*unit - ink - pad
	}
	return axis(s.pad.X, area.Min.X, area.Max.X, o.size.X), axis(s.pad.Y, area.Min.Y, area.Max.Y, o.size.Y)
}

// centred is the top-left corner that puts o in the middle of the image; a sign on the snap grid takes the
// grid position nearest to it.
func (s *scene) centred(o *object) (x, y int) {
	x, y = (s.w-o.size.X)/2, (s.h-o.size.Y)/2
	if !o.sign || s.snap == 0 {
		return x, y
	}
	unit, ink := s.snap*o.scale, signPad*o.scale
	near := func(v, pad int) int { return floorDiv(v+ink+pad+unit/2, unit)*unit - ink - pad }
	return near(x, s.pad.X), near(y, s.pad.Y)
}

func ceilDiv(a, b int) int { return -floorDiv(-a, b) }
func floorDiv(a, b int) int {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// free reports whether box keeps a 2-pixel gap from every placed object.
func (s *scene) free(box image.Rectangle) bool {
	for _, o := range s.objects {
		if box.Inset(-2).Overlaps(o.box) {
			return false
		}
	}
	return true
}

// target draws the object the question is about, for the given kind, and places it first (an empty image
// always has room for it: Validate guarantees the short side holds a large sign).
func (s *scene) target(r *rng, kind string) (question, error) {
	var q question
	switch {
	case kind == KindSmall:
		q.task, q.target = "read", s.newObject(r, true).withSign(smallText(r), 1)
	case r.chance(1, 3):
		q.task, q.target = "read", s.newObject(r, true).withSign(largeText(r), s.zoom)
	default:
		q.task, q.target = pick(r, []string{"color", "shape"}), s.newObject(r, false)
		d := s.shapeSide(r)
		q.target.size = image.Pt(d, d)
	}
	if !s.place(r, q.target) {
		return q, fmt.Errorf("synth: no room for a %dx%d object in a %dx%d image", q.target.size.X, q.target.size.Y, s.w, s.h)
	}
	q.text, q.answer = q.words()
	return q, nil
}

// words renders the question about q.target and its answer.
func (q question) words() (text, answer string) {
	o := q.target
	switch q.task {
	case "color":
		return fmt.Sprintf(askColour, shapes[o.shape]), palette[o.colour].name
	case "shape":
		return fmt.Sprintf(askShape, palette[o.colour].name), shapes[o.shape]
	}
	return fmt.Sprintf(askRead, palette[o.colour].name), o.text
}

// followUps draws up to n more questions about the placed objects, in random order: the colour and the
// shape of every large shape and the text of every sign, less the question already asked. Every object has
// a colour of its own and every shape a shape of its own, so each still has one answer. Small signs are
// left out unless small is set (without HR they could only teach guessing).
func (s *scene) followUps(r *rng, asked question, n int, small bool) []question {
	var qs []question
	for _, o := range s.objects {
		switch {
		case !o.sign:
			qs = append(qs, question{task: "color", target: o}, question{task: "shape", target: o})
		case o.scale > 1 || small:
			qs = append(qs, question{task: "read", target: o})
		}
	}
	qs = slices.DeleteFunc(qs, func(q question) bool { return q.task == asked.task && q.target == asked.target })
	shuffle(r, qs)
	qs = qs[:min(n, len(qs))]
	for i := range qs {
		qs[i].text, qs[i].answer = qs[i].words()
	}
	return qs
}

// smallText draws a small sign's text: a digit, a letter or a short word, equally often.
func smallText(r *rng) string {
	return pick(r, [][]string{digits, letters, smallWords}[r.intn(3)])
}

// largeText draws a large sign's text: a digit or a letter.
func largeText(r *rng) string {
	return pick(r, [][]string{digits, letters}[r.intn(2)])
}

// others adds up to n more shapes and n more signs (small or large), as room allows, so that the target
// is one of several objects.
func (s *scene) others(r *rng, n int) {
	for range r.intn(n + 1) {
		o := s.newObject(r, false)
		d := s.shapeSide(r)
		o.size = image.Pt(d, d)
		s.place(r, o)
	}
	for range r.intn(n + 1) {
		o := s.newObject(r, true)
		if r.chance(1, 2) {
			o.withSign(smallText(r), 1)
		} else {
			o.withSign(largeText(r), s.zoom)
		}
		s.place(r, o)
	}
}

// drawObjects paints every placed object.
func (s *scene) drawObjects(img *image.RGBA) {
	for _, o := range s.objects {
		c := palette[o.colour].rgb
		if o.sign {
			drawSign(img, o.ink, o.box.Min, o.scale, c)
		} else {
			fillShape(img, o.shape, o.box.Min, o.size.X, c)
		}
	}
}

// muted draws a low-saturation colour with channels in [lo−25, hi+25], for backgrounds and clutter. With
// lo ≥ 50 and hi ≤ 210 (and ±8 noise) no pixel reaches the palette's white (250) or black (15), and none
// is as saturated as the other palette colours.
func muted(r *rng, lo, hi int) color.RGBA {
	g := r.between(lo, hi)
	tint := func() uint8 { return clamp8(g + r.between(-25, 25)) }
	return color.RGBA{tint(), tint(), tint(), 255}
}

// background paints a gradient between two muted colours, then up to clutter distractors, then noise.
func background(img *image.RGBA, r *rng, clutter int) {
	gradient(img, muted(r, 90, 180), muted(r, 90, 180), r.between(-8, 8), r.between(-8, 8))
	for range r.between(clutter/3, clutter) {
		distractor(img, r)
	}
	addNoise(img, r, 8)
}

// strayChars are the characters clutter glyphs show.
var strayChars = append(append([]string(nil), digits...), letters...)

// distractor paints one piece of clutter: an outlined circle or rectangle, a line, or a stray grey glyph
// (text that is on no sign, so no question is about it).
func distractor(img *image.RGBA, r *rng) {
	b := img.Rect
	p := image.Pt(r.intn(b.Dx()), r.intn(b.Dy()))
	d := r.between(4, max(4, min(b.Dx(), b.Dy())/4))
	c := muted(r, 50, 210)
	switch r.intn(4) {
	case 0:
		ring(img, p, d, r.between(1, 2), c)
	case 1:
		frame(img, image.Rect(p.X, p.Y, p.X+d, p.Y+r.between(4, d)), 1, c)
	case 2:
		line(img, p, image.Pt(r.intn(b.Dx()), r.intn(b.Dy())), c)
	default:
		drawInk(img, inkMask(pick(r, strayChars)), p, 1, c)
	}
}
