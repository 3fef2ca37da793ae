package synth

import (
	"image"
	"testing"
)

// TestOthersBound checks that a scene holds the target plus at most Others extra shapes and Others extra
// signs, and that Others = 0 leaves the target alone.
func TestOthersBound(t *testing.T) {
	for _, others := range []int{0, 1, 2, 4} {
		most, seenMore := 0, false
		for i := range 200 {
			r := newRNG(7, uint64(others), uint64(i))
			s := &scene{w: 192, h: 192, zoom: 3, colours: map[int]bool{}, shapes: map[int]bool{}}
			if _, err := s.target(r, pick(r, []string{KindSmall, KindLarge})); err != nil {
				t.Fatalf("others=%d sample %d: %v", others, i, err)
			}
			s.others(r, others)
			shapes, signs := countObjects(s.objects[1:])
			if shapes > others || signs > others {
				t.Errorf("others=%d sample %d: got %d extra shapes and %d extra signs; want at most %d each", others, i, shapes, signs, others)
			}
			most = max(most, len(s.objects)-1)
			seenMore = seenMore || len(s.objects) > 1
		}
		if others == 0 && seenMore {
			t.Errorf("others=0: got scenes with extra objects; want the target alone")
		}
		if others > 0 && most == 0 {
			t.Errorf("others=%d: no scene of 200 had an extra object; want some", others)
		}
	}
}

func countObjects(objs []*object) (shapes, signs int) {
	for _, o := range objs {
		if o.sign {
			signs++
		} else {
			shapes++
		}
	}
	return shapes, signs
}

// TestOthersZeroImages renders images with others=0 and checks the record still names a box inside them.
func TestOthersZeroImages(t *testing.T) {
	o := DefaultOptions()
	o.Others = 0
	for i := range 20 {
		img, c, err := renderImage(o, newRNG(3, 1, uint64(i)), KindLarge, 1, false)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		box := image.Rect(c.box[0], c.box[1], c.box[2], c.box[3])
		if !box.In(img.Rect) || box.Empty() {
			t.Errorf("sample %d: box %v in image %v; want a non-empty box inside", i, box, img.Rect)
		}
	}
}

// TestSnap checks that with Snap = P every sign's ink starts on the grid of P·scale pixels of the padded
// square (so on an LR patch boundary for a large sign, an HR patch boundary for a small one) and stays
// inside the image, for images of every aspect; and that placement still varies.
func TestSnap(t *testing.T) {
	for _, snap := range []int{4, 8} {
		corners := map[image.Point]bool{}
		for i := range 300 {
			r := newRNG(11, uint64(snap), uint64(i))
			w, h := imageSize(r, 192, 0.6)
			side := max(w, h)
			s := &scene{w: w, h: h, zoom: 3, snap: snap, pad: image.Pt((side-w)/2, (side-h)/2),
				colours: map[int]bool{}, shapes: map[int]bool{}}
			if _, err := s.target(r, pick(r, []string{KindSmall, KindLarge})); err != nil {
				t.Fatalf("snap=%d sample %d (%dx%d): %v", snap, i, w, h, err)
			}
			s.others(r, 2)
			for _, o := range s.objects {
				if !o.sign {
					continue
				}
				ink := o.box.Min.Add(image.Pt(signPad*o.scale, signPad*o.scale)).Add(s.pad)
				unit := snap * o.scale
				if ink.X%unit != 0 || ink.Y%unit != 0 {
					t.Errorf("snap=%d sample %d: %q (scale %d) ink at %v of the padded square; want multiples of %d", snap, i, o.text, o.scale, ink, unit)
				}
				if !o.box.In(image.Rect(1, 1, w-1, h-1)) {
					t.Errorf("snap=%d sample %d: sign box %v outside the %dx%d image's 1-pixel border", snap, i, o.box, w, h)
				}
				corners[o.box.Min] = true
			}
		}
		if len(corners) < 20 {
			t.Errorf("snap=%d: signs took only %d distinct places; want them spread over the grid", snap, len(corners))
		}
	}
}

// TestFollowUps checks the follow-up questions of a crowded scene: at most n, never the question already
// asked, never twice the same, each about a placed object that its words name alone (the only shape of
// its shape, the only object of its colour), and small signs only when allowed.
func TestFollowUps(t *testing.T) {
	for _, small := range []bool{false, true} {
		total, smallReads := 0, 0
		for i := range 100 {
			r := newRNG(5, 1, uint64(i))
			s := &scene{w: 192, h: 192, zoom: 3, colours: map[int]bool{}, shapes: map[int]bool{}}
			asked, err := s.target(r, KindLarge)
			if err != nil {
				t.Fatal(err)
			}
			s.others(r, 3)
			qs := s.followUps(r, asked, 4, small)
			if len(qs) > 4 {
				t.Fatalf("sample %d: %d follow-ups; want at most 4", i, len(qs))
			}
			seen := map[string]bool{asked.text: true}
			for _, q := range qs {
				if seen[q.text] {
					t.Errorf("sample %d: %q asked twice", i, q.text)
				}
				seen[q.text] = true
				if n := referents(s, q); n != 1 {
					t.Errorf("sample %d: %q fits %d objects; want 1", i, q.text, n)
				}
				if q.task == "read" && q.target.scale == 1 {
					smallReads++
				}
			}
			total += len(qs)
		}
		if total < 200 {
			t.Errorf("small=%v: %d follow-ups over 100 crowded scenes; want most scenes to have several", small, total)
		}
		if small != (smallReads > 0) {
			t.Errorf("small=%v: %d follow-ups read small signs", small, smallReads)
		}
	}
}

// referents counts the placed objects that q's wording could mean: by shape for a colour question, by
// colour otherwise, among signs for a read question and among shapes for the others.
func referents(s *scene, q question) int {
	n := 0
	for _, o := range s.objects {
		switch {
		case q.task == "color" && !o.sign && o.shape == q.target.shape:
			n++
		case q.task == "shape" && !o.sign && o.colour == q.target.colour:
			n++
		case q.task == "read" && o.sign && o.colour == q.target.colour:
			n++
		}
	}
	return n
}
