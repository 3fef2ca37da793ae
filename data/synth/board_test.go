package synth

import (
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBoards checks a board dataset's records against what Options.Signs promises: every image has one or
// two large signs and ⌈Signs/2⌉…Signs small ones (a target included), each of its own colour; the question names
// the target by its colour; "box" and "others" are the signs' boxes, inside the image and apart; a small
// question's target is a small sign and a large one's the large sign; follow-ups ask rows, columns and the
// count with answers that match the boxes; and often another sign shares the target's crop.
func TestBoards(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, N: 80, ValN: 10, TestN: 40, Seed: 5, HRSize: 192, Zoom: 3, SmallFrac: 0.5, TextFrac: 0.1,
		MinAspect: 0.6, Snap: 8, Asks: 6, Signs: 8}
	m, err := Generate(opts)
	if err != nil {
		t.Fatal(err)
	}
	shared, small := 0, 0
	for _, split := range []string{m.Train, m.Test} {
		for _, r := range readRecords(t, split) {
			if r.Kind == KindText {
				continue
			}
			w, h := imageSizeOf(t, filepath.Join(m.ImageFolder, r.Image))
			checkBoard(t, r, w, h)
			if r.Kind == KindSmall {
				small++
				if sharesCrop(r, w, h, opts.Zoom) {
					shared++
				}
			}
		}
	}
	if small == 0 || shared*2 < small {
		t.Errorf("another sign shares the target's crop in %d of %d small questions; want most", shared, small)
	}
}

// checkBoard checks one board record of a w×h image.
func checkBoard(t *testing.T, r Record, w, h int) {
	t.Helper()
	signs := append([][]int{r.Box}, r.Others...)
	if len(signs) < 1+minSigns || len(signs) > largeSigns+8 {
		t.Errorf("%s: %d signs; want up to %d large and 4…8 small", r.ID, len(signs), largeSigns)
	}
	var boxes []image.Rectangle
	large := 0
	for _, b := range signs {
		box := image.Rect(b[0], b[1], b[2], b[3])
		if !box.In(image.Rect(1, 1, w-1, h-1)) {
			t.Errorf("%s: sign %v outside the %dx%d image", r.ID, box, w, h)
		}
		for _, o := range boxes {
			if o.Inset(-2).Overlaps(box) {
				t.Errorf("%s: signs %v and %v touch", r.ID, o, box)
			}
		}
		boxes = append(boxes, box)
		if box.Dy() > 30 { // a large sign is Z times a small one's 13 pixels
			large++
		}
	}
	if large < 1 || large > largeSigns {
		t.Errorf("%s: %d large signs; want 1…%d", r.ID, large, largeSigns)
	}
	target := image.Rect(r.Box[0], r.Box[1], r.Box[2], r.Box[3])
	if (r.Kind == KindSmall) != (target.Dy() < 30) {
		t.Errorf("%s: a %s question about a sign %d pixels tall", r.ID, r.Kind, target.Dy())
	}
	want := fmt.Sprintf(askRead, r.Tags["color"]) + suffix
	if !strings.HasSuffix(r.Conversations[0].Value, want) {
		t.Errorf("%s: question %q; want it to end %q", r.ID, r.Conversations[0].Value, want)
	}
	for i := 2; i+1 < len(r.Conversations); i += 2 {
		q, a := r.Conversations[i].Value, r.Conversations[i+1].Value
		if q == askCount+suffix && a != fmt.Sprint(len(signs)) {
			t.Errorf("%s: count %s; want %d", r.ID, a, len(signs))
		}
		if strings.HasPrefix(q, "Which row") && !oneOf(a, rowNames) || strings.HasPrefix(q, "Which column") && !oneOf(a, columnNames) {
			t.Errorf("%s: %q answered %q", r.ID, q, a)
		}
	}
}

func oneOf(s string, list []string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

// sharesCrop reports whether another sign's centre lies in the HR crop of the target's centre.
func sharesCrop(r Record, w, h, zoom int) bool {
	side := max(w, h)
	crop := func(b []int) image.Point {
		x, y := (b[0]+b[2])/2+(side-w)/2, (b[1]+b[3])/2+(side-h)/2
		return image.Pt(x*zoom/side, y*zoom/side)
	}
	for _, o := range r.Others {
		if crop(o) == crop(r.Box) {
			return true
		}
	}
	return false
}

func imageSizeOf(t *testing.T, path string) (w, h int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, _, err := image.DecodeConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Width, cfg.Height
}

// TestBoardRowsAndColumns checks the position answers against a scene laid out by hand.
func TestBoardRowsAndColumns(t *testing.T) {
	s := &scene{w: 150, h: 90}
	cases := []struct {
		box         image.Rectangle
		row, column string
	}{
		{image.Rect(1, 1, 11, 14), "top", "left"},
		{image.Rect(70, 40, 80, 53), "middle", "middle"},
		{image.Rect(130, 70, 148, 88), "bottom", "right"},
		{image.Rect(95, 50, 105, 63), "middle", "right"}, // centre x = 100, two thirds exactly: the right third begins there
	}
	for _, c := range cases {
		o := &object{sign: true, box: c.box}
		if _, a := s.boardWords(question{task: "row", target: o}); a != c.row {
			t.Errorf("row of %v = %s; want %s", c.box, a, c.row)
		}
		if _, a := s.boardWords(question{task: "column", target: o}); a != c.column {
			t.Errorf("column of %v = %s; want %s", c.box, a, c.column)
		}
	}
}

// TestBoardVocabulary checks that boards add their words after every other (the demo's ids stay) and that
// the tokenizer of a board dataset holds every word its records use.
func TestBoardVocabulary(t *testing.T) {
	plain, boards := vocabulary(false), vocabulary(true)
	for i, w := range plain {
		if boards[i] != w {
			t.Fatalf("word %d is %q with boards, %q without; want the same ids", i, boards[i], w)
		}
	}
	if len(boards) != len(plain)+14 {
		t.Errorf("boards add %d words; want 14", len(boards)-len(plain))
	}
	known := map[string]bool{}
	for _, w := range boards {
		known[w] = true
	}
	for _, q := range []string{askRow, askColumn, askCount} {
		for _, w := range wordPattern.FindAllString(strings.ReplaceAll(q, "%s", ""), -1) {
			if !known[w] {
				t.Errorf("%q of %q is not in the board vocabulary", w, q)
			}
		}
	}
	var tok struct {
		Model struct{ Vocab map[string]int } `json:"model"`
	}
	b, err := tokenizerJSON(true)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &tok); err != nil || len(tok.Model.Vocab) != len(boards) {
		t.Errorf("tokenizer.json with boards: %d words (%v); want %d", len(tok.Model.Vocab), err, len(boards))
	}
}

// TestBoardTargetsSpread checks that a board's target lies anywhere with about equal chance: over many
// boards, each ninth of the image (its thirds across and down) holds about a ninth of the targets' centres,
// so that the centre is no better a guess than an edge.
func TestBoardTargetsSpread(t *testing.T) {
	const n = 3000
	var count [3][3]int
	for i := range n {
		r := newRNG(11, uint64(i))
		w, h := imageSize(r, 192, 0.6)
		s := &scene{w: w, h: h, zoom: 3, snap: 8, pad: image.Pt((max(w, h)-w)/2, (max(w, h)-h)/2), colours: map[int]bool{}, shapes: map[int]bool{}}
		q, err := s.board(r, KindSmall, 8)
		if err != nil {
			t.Fatal(err)
		}
		b := q.target.box
		count[third(b.Min.Y, b.Max.Y, h)][third(b.Min.X, b.Max.X, w)]++
	}
	t.Logf("targets per ninth of the image, of %d: %v", n, count)
	for row := range count {
		for col, c := range count[row] {
			if share := float64(c) / n; share < 0.07 || share > 0.16 {
				t.Errorf("ninth (%d, %d) holds %.3f of the targets; want about 1/9", row, col, share)
			}
		}
	}
}
