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
		img, c, err := renderImage(o, newRNG(3, 1, uint64(i)), KindLarge)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		box := image.Rect(c.box[0], c.box[1], c.box[2], c.box[3])
		if !box.In(img.Rect) || box.Empty() {
			t.Errorf("sample %d: box %v in image %v; want a non-empty box inside", i, box, img.Rect)
		}
	}
}
