package synth

import (
	"fmt"
	"image"
	"strconv"
)

// A board is the scene of the selection experiment (Options.Signs > 0): two large signs and several small
// ones, every sign of its own colour, and a question that names one sign by its colour. Which sign the
// question is about is visible in the LR view (the colours are), what a small sign says is not, so the HR
// tokens that help are those of the named sign, not of whichever sign an attention map happens to find.
// There are two large signs so that reading one at LR already needs its colour: with one, the only
// legible sign would be the answer, and a base model would learn to read without looking for the colour.
// The target lies anywhere with equal chance (the centre is no better than an edge), and a second small sign
// goes into the target's crop when there is room, so that reaching the right crop is not enough.

// Board question templates (the read question is askRead, as on every scene): where the named sign is, as a
// third of the image's height or width, and how many signs there are. The LR view answers all three, so
// they teach a base model where each colour is before any HR token exists.
const (
	askRow    = "Which row is the %s sign in?"
	askColumn = "Which column is the %s sign in?"
	askCount  = "How many signs are there?"
)

// rowNames and columnNames answer askRow and askColumn: the third of the image that holds the sign's centre.
var (
	rowNames    = []string{"top", "middle", "bottom"}
	columnNames = []string{"left", "middle", "right"}
)

// Board sizes: the fewest small signs a board holds at Signs = 2 (at larger Signs it holds ⌈Signs/2⌉…Signs),
// and the large signs it holds when there is room.
const (
	minSigns   = 2
	largeSigns = 2
)

// board places the signs of a board image: the target (a small sign for a small question, a large one for a
// large question) first, then a small sign in the target's crop, then the large signs, then the other small
// ones. Signs that find no room are left out; the count question counts what was placed.
func (s *scene) board(r *rng, kind string, most int) (question, error) {
	n := r.between(max(minSigns, (most+1)/2), most) // small signs
	small := func() *object { return s.newObject(r, true).withSign(smallText(r), 1) }
	large := func() *object { return s.newObject(r, true).withSign(largeText(r), s.zoom) }
	q, larges := question{task: "read", target: large()}, largeSigns-1
	if kind == KindSmall {
		q.target, n, larges = small(), n-1, largeSigns
	}
	if !s.place(r, q.target) {
		return q, fmt.Errorf("synth: no room for a %dx%d sign in a %dx%d image", q.target.size.X, q.target.size.Y, s.w, s.h)
	}
	if n > 0 && s.placeIn(r, small(), s.crop(q.target.box)) {
		n--
	}
	for range larges {
		s.place(r, large())
	}
	for range n {
		s.place(r, small())
	}
	q.text, q.answer = q.words()
	return q, nil
}

// crop is the part of the image that the HR view's crop holding the centre of box shows: the padded square
// cut into zoom×zoom crops, as the vision tower reads the HR view (docs/DESIGN.md §4).
func (s *scene) crop(box image.Rectangle) image.Rectangle {
	side := max(s.w, s.h)
	c := box.Min.Add(box.Max).Div(2).Add(s.pad) // the centre, in the padded square
	i, j := c.X*s.zoom/side, c.Y*s.zoom/side
	r := image.Rect(i*side/s.zoom, j*side/s.zoom, (i+1)*side/s.zoom, (j+1)*side/s.zoom)
	return r.Sub(s.pad).Intersect(image.Rect(0, 0, s.w, s.h))
}

// third is which third of length holds the centre of [lo, hi).
func third(lo, hi, length int) int { return min(2, 3*(lo+hi)/(2*length)) }

// boardFollowUps draws up to n more questions about a board: first the text of every other sign that the LR
// view can read (every sign when small is set), in random order, then the row and the column of every sign
// and the count of signs, in random order. Asking for both large signs' text of one image is what makes a
// base model read by colour: the same image, two colours, two answers.
func (s *scene) boardFollowUps(r *rng, asked question, n int, small bool) []question {
	var reads, rest []question
	rest = append(rest, question{task: "count"})
	for _, o := range s.objects {
		rest = append(rest, question{task: "row", target: o}, question{task: "column", target: o})
		if (o.scale > 1 || small) && o != asked.target {
			reads = append(reads, question{task: "read", target: o})
		}
	}
	shuffle(r, reads)
	shuffle(r, rest)
	qs := append(reads, rest...)
	qs = qs[:min(n, len(qs))]
	for i := range qs {
		qs[i].text, qs[i].answer = s.boardWords(qs[i])
	}
	return qs
}

// boardWords renders a board question and its answer.
func (s *scene) boardWords(q question) (text, answer string) {
	o := q.target
	switch q.task {
	case "count":
		return askCount, strconv.Itoa(len(s.objects))
	case "row":
		return fmt.Sprintf(askRow, palette[o.colour].name), rowNames[third(o.box.Min.Y, o.box.Max.Y, s.h)]
	case "column":
		return fmt.Sprintf(askColumn, palette[o.colour].name), columnNames[third(o.box.Min.X, o.box.Max.X, s.w)]
	}
	return q.words()
}

// boxes lists the boxes of every placed object but the target, as records carry them ("others").
func (s *scene) boxes(target *object) [][]int {
	var out [][]int
	for _, o := range s.objects {
		if o != target {
			out = append(out, boxOf(o))
		}
	}
	return out
}
