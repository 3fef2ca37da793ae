package inference

import (
	"image"
	"math"
	"testing"

	"github.com/flextrain/flextrain/model/ops"
)

// TestHRBox: a box of the original image lands in the HR view shifted by the padding and scaled, rounded
// outwards and clipped.
func TestHRBox(t *testing.T) {
	tests := []struct {
		name string
		box  []int
		ori  [2]int
		side int
		want image.Rectangle
	}{
		{"square, same size", []int{10, 20, 30, 40}, [2]int{96, 96}, 96, image.Rect(10, 20, 30, 40)},
		{"square, scaled ×2", []int{10, 20, 30, 40}, [2]int{48, 48}, 96, image.Rect(20, 40, 60, 80)},
		{"wide: padded above", []int{0, 0, 10, 10}, [2]int{120, 80}, 120, image.Rect(0, 20, 10, 30)},
		{"tall: padded left, rounded outwards", []int{1, 1, 2, 2}, [2]int{60, 90}, 60, image.Rect(10, 0, 12, 2)},
		{"clipped", []int{-5, 0, 200, 10}, [2]int{96, 96}, 96, image.Rect(0, 0, 96, 10)},
	}
	for _, tt := range tests {
		if got := hrBox(tt.box, tt.ori, tt.side); got != tt.want {
			t.Errorf("%s: hrBox(%v, %v, %d) = %v; want %v", tt.name, tt.box, tt.ori, tt.side, got, tt.want)
		}
	}
}

// TestSummarizeSelections: per layer, the mean selected fraction over all views, and coverage and hits over
// the views with a box.
func TestSummarizeSelections(t *testing.T) {
	cells := func(n int) []bool { // n of 4 cells selected
		c := make([]bool, 4)
		for i := 0; i < n; i++ {
			c[i] = true
		}
		return c
	}
	views := []SelectionView{
		{Cells: [][]bool{cells(1), cells(4)}, Coverage: []float64{0, 1}, InCrop: []bool{true, true}},
		{Cells: [][]bool{cells(3), cells(2)}, Coverage: []float64{0.5, 0.25}, InCrop: []bool{false, true}},
		{Cells: [][]bool{cells(0), cells(0)}, Coverage: []float64{math.NaN(), math.NaN()}}, // text without a box
	}
	got := SummarizeSelections(views)
	want := []LayerSelection{
		{Selected: 4.0 / 12, Covered: 0.25, Hit: 0.5, Crop: 0.5, Boxes: 2},
		{Selected: 6.0 / 12, Covered: 0.625, Hit: 1, Crop: 1, Boxes: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("%d layers; want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if math.Abs(g.Selected-w.Selected) > 1e-12 || g.Covered != w.Covered || g.Hit != w.Hit || g.Crop != w.Crop || g.Boxes != w.Boxes {
			t.Errorf("layer %d: %+v; want %+v", i, g, w)
		}
	}
}

// pixels per token cut into 3×3 cells (2×2 tokens each).
func TestCoverage(t *testing.T) {
	grid := ops.CellGrid{G: 3, Zg: 6}
	first := make([]bool, 9) // the top-left cell: tokens (0..1, 0..1), pixels [0, 8)
	first[0] = true
	tests := []struct {
		name string
		box  image.Rectangle
		want float64
	}{
		{"inside the selected cell", image.Rect(1, 1, 7, 7), 1},
		{"one token of the cell", image.Rect(5, 5, 6, 6), 1},
		{"across the cell's edge: 2 of 4 tokens", image.Rect(4, 6, 12, 8), 0.5},
		{"elsewhere", image.Rect(12, 12, 20, 20), 0},
		{"empty", image.Rectangle{}, 0},
	}
	for _, tt := range tests {
		if got := coverage(tt.box, first, grid, 24); got != tt.want {
			t.Errorf("%s: coverage(%v) = %g; want %g", tt.name, tt.box, got, tt.want)
		}
	}
}

// TestInCrop: a 12×12-token view (Z = 3: crops of 4×4 tokens, 16 pixels) cut into 6×6 cells of 2×2 tokens;
// a box counts as reached when a selected cell lies in the crop of its centre, wherever in that crop.
func TestInCrop(t *testing.T) {
	grid := ops.CellGrid{G: 6, Zg: 12}
	only := func(i int) []bool { c := make([]bool, 36); c[i] = true; return c }
	box := image.Rect(18, 2, 22, 6) // centre (20, 4): crop row 0, crop column 1 (cells 2, 3, 8, 9)
	tests := []struct {
		name  string
		cells []bool
		want  bool
	}{
		{"the box's own cell", only(2), true},
		{"another cell of the crop", only(9), true},
		{"the next crop", only(4), false},
		{"the crop below", only(14), false},
	}
	for _, tt := range tests {
		if got := inCrop(box, tt.cells, grid, 48, 3); got != tt.want {
			t.Errorf("%s: inCrop = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestMassUnder: the share of an attention map under each box, the boxes mapped to LR tokens through the
// padding and rounded outwards, a token under two boxes counted for both.
func TestMassUnder(t *testing.T) {
	m := []float64{ // 4×4 tokens of a 40×40 image (10 pixels a token), total 16
		4, 0, 0, 0,
		0, 2, 2, 0,
		0, 0, 0, 0,
		0, 0, 0, 8,
	}
	got, lift := massUnder(m, [][]int{{0, 0, 5, 5}, {12, 12, 28, 18}, {35, 35, 40, 40}, {15, 0, 25, 10}, {1, 2}}, [2]int{40, 40}, 4)
	want := []float64{4.0 / 16, 4.0 / 16, 8.0 / 16, 0, 0}
	// per token over the mean 1/16: the first box has one token, the second two (2 × 1 of row 1), the third one.
	wantLift := []float64{4, 2, 8, 0, 0}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-12 || math.Abs(lift[i]-wantLift[i]) > 1e-12 {
			t.Errorf("box %d: mass %g, lift %g; want %g, %g", i, got[i], lift[i], want[i], wantLift[i])
		}
	}
	// A 40×20 image is padded with 10 rows above: its box (0, 0, 5, 5) lies in token row 1.
	if got, _ := massUnder(m, [][]int{{0, 0, 5, 5}}, [2]int{40, 20}, 4); got[0] != 0 {
		t.Errorf("padded image: mass %g; want 0 (token (1, 0))", got[0])
	}
}

// TestSummarizeOthers: distractor coverage over the views with others, attention mass over the views with a
// box and others, and how often the target holds more of it than each other object.
func TestSummarizeOthers(t *testing.T) {
	views := []SelectionView{
		{Cells: [][]bool{{true}}, Coverage: []float64{1}, InCrop: []bool{true}, OthersCoverage: []float64{0.5},
			Mass: [][]float64{{0.6, 0.1, 0.3}}, Lift: [][]float64{{2, 1, 1}}},
		{Cells: [][]bool{{false}}, Coverage: []float64{0}, InCrop: []bool{false}, OthersCoverage: []float64{0},
			Mass: [][]float64{{0.2, 0.4}}, Lift: [][]float64{{3, 1}}}, // first by lift though not by mass
		{Cells: [][]bool{{false}}, Coverage: []float64{math.NaN()}, OthersCoverage: []float64{math.NaN()}},
	}
	got := SummarizeSelections(views)[0]
	if got.WithOthers != 2 || got.OthersCovered != 0.25 {
		t.Errorf("others: %d views, covered %g; want 2 and 0.25", got.WithOthers, got.OthersCovered)
	}
	if got.Massed != 2 || math.Abs(got.TargetMass-0.4) > 1e-12 || math.Abs(got.OtherMass-0.3) > 1e-12 || got.TargetFirst != 1 {
		t.Errorf("mass: %d views, target %g, other %g, first %g; want 2, 0.4, 0.3, 1", got.Massed, got.TargetMass, got.OtherMass, got.TargetFirst)
	}
	if got.TargetLift != 2.5 || got.OtherLift != 1 {
		t.Errorf("lift: target %g, other %g; want 2.5 and 1", got.TargetLift, got.OtherLift)
	}
}
