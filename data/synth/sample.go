package synth

import (
	"fmt"
	"image"

	"github.com/flextrain/flextrain/data"
)

// Record is one element of a generated {train,val,test}.json: a LLaVA instruction record ({"id", "image",
// "conversations"}) plus the fields evaluation needs, which the LLaVA loader ignores.
type Record struct {
	ID            string `json:"id"`
	Image         string `json:"image,omitempty"` // relative to Manifest.ImageFolder; absent for text-only
	Conversations []Turn `json:"conversations"`
	Kind          string `json:"kind"` // KindSmall, KindLarge or KindText
	Task          string `json:"task"` // color, shape, read (image); plus, minus, after, fact (text)
	// Box is the target object's bounding box in original image pixels, [x0, y0, x1, y1] with x1 and y1
	// exclusive (as image.Rectangle); absent for text-only records.
	Box []int `json:"box,omitempty"`
	// Others are the boxes of the image's other signs, as Box, on a board (Options.Signs); absent otherwise.
	Others [][]int `json:"others,omitempty"`
	// Tags describe the target object for the vision tower's tag pretraining (data.Record.Tags): its
	// "color", its "object" (a shape's name or "sign") and, for a large sign, its "text". A small sign's
	// text is left out: the LR view the pretraining sees cannot show it.
	Tags map[string]string `json:"tags,omitempty"`
}

// Turn is one message of a conversation: From is "human" or "gpt".
type Turn struct {
	From  string `json:"from"`
	Value string `json:"value"`
}

// Answer returns the expected answer (the gpt turn), the string exact-match evaluation compares against.
func (r Record) Answer() string {
	if len(r.Conversations) < 2 {
		return ""
	}
	return r.Conversations[1].Value
}

// content is what a sample asks and answers, before it gets an id and a file name.
type content struct {
	kind, task, question, answer string
	box                          []int   // nil for text-only samples
	others                       [][]int // the other signs' boxes on a board
	tags                         map[string]string
	more                         [][2]string // follow-up questions and answers, in order
}

// record builds the LLaVA record: the question (after "<image>\n" when there is an image) with the
// short-answer suffix, then the answer, then each follow-up likewise.
func (c content) record(id, image string) Record {
	q := c.question + suffix
	if image != "" {
		q = "<image>\n" + q
	}
	turns := []Turn{{From: "human", Value: q}, {From: "gpt", Value: c.answer}}
	for _, qa := range c.more {
		turns = append(turns, Turn{From: "human", Value: qa[0] + suffix}, Turn{From: "gpt", Value: qa[1]})
	}
	return Record{ID: id, Image: image, Kind: c.kind, Task: c.task, Box: c.box, Others: c.others, Tags: c.tags,
		Conversations: turns}
}

// renderImage draws one image sample of the given kind: background, target, other objects. asks is the
// most questions to ask about it (follow-ups only when above 1).
func renderImage(o Options, r *rng, kind string, asks int, centred bool) (*image.RGBA, content, error) {
	w, h := imageSize(r, o.HRSize, o.MinAspect)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	background(img, r, o.Clutter)
	s := &scene{w: w, h: h, zoom: o.Zoom, snap: o.Snap, pad: data.SquareOffset(w, h), centre: centred,
		colours: map[int]bool{}, shapes: map[int]bool{}}
	if o.Signs > 0 {
		c, err := renderBoard(o, r, s, kind, asks)
		if err == nil {
			s.drawObjects(img)
		}
		return img, c, err
	}
	q, err := s.target(r, kind)
	if err != nil {
		return nil, content{}, err
	}
	s.others(r, o.Others)
	s.drawObjects(img)
	c := content{kind: kind, task: q.task, question: q.text, answer: q.answer, box: boxOf(q.target), tags: q.target.tags()}
	if asks > 1 {
		for _, f := range s.followUps(r, q, asks-1, o.SmallFrac > 0) {
			c.more = append(c.more, [2]string{f.text, f.answer})
		}
	}
	return img, c, nil
}

// renderBoard places a board's signs (Options.Signs) and writes its questions.
func renderBoard(o Options, r *rng, s *scene, kind string, asks int) (content, error) {
	q, err := s.board(r, kind, o.Signs)
	if err != nil {
		return content{}, err
	}
	c := content{kind: kind, task: q.task, question: q.text, answer: q.answer, box: boxOf(q.target),
		others: s.boxes(q.target), tags: q.target.tags()}
	if asks > 1 {
		for _, f := range s.boardFollowUps(r, q, asks-1, o.SmallFrac > 0) {
			c.more = append(c.more, [2]string{f.text, f.answer})
		}
	}
	return c, nil
}

// boxOf is o's box as records write it: [x0, y0, x1, y1].
func boxOf(o *object) []int { return []int{o.box.Min.X, o.box.Min.Y, o.box.Max.X, o.box.Max.Y} }

// renderText draws one text-only sample.
func renderText(r *rng) content {
	task, q, a := textQuestion(r)
	return content{kind: KindText, task: task, question: q, answer: a}
}

// sampleName is the id of sample i of a split, and the base name of its image.
func sampleName(split string, i int) string { return fmt.Sprintf("%s-%06d", split, i) }
