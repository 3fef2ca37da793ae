package train

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
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

// TestSelectionPNG: over a grey HR view cut into 3×3 cells, a selected cell keeps its colour inside a yellow
// outline, an unselected one is dimmed, the box is outlined in cyan, and each FlexAttention layer gets its
// own tile; the caption is green when the prediction is right and red when it is wrong.
func TestSelectionPNG(t *testing.T) {
	const side = 24 // 3×3 tokens of 8 pixels, one cell each
	grey := color.RGBA{200, 200, 200, 255}
	hr := image.NewRGBA(image.Rect(0, 0, side, side))
	for i := 0; i < len(hr.Pix); i += 4 {
		hr.Pix[i], hr.Pix[i+1], hr.Pix[i+2], hr.Pix[i+3] = grey.R, grey.G, grey.B, 255
	}
	centre, corner := make([]bool, 9), make([]bool, 9)
	centre[4], corner[0] = true, true
	views := []SelectionView{
		{ID: "a", Answer: "G", Predicted: "G", HR: hr, Cells: [][]bool{centre, corner}, Box: image.Rect(18, 18, 22, 22)},
		{ID: "b", Answer: "G", Predicted: "Q", HR: hr, Cells: [][]bool{corner, centre}},
	}
	b, err := SelectionPNG(views, ops.CellGrid{G: 3, Zg: 3})
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tileSide := side * figScale
	if got, want := img.Bounds().Size(), image.Pt(figPad+2*(tileSide+figPad), figCaption+2*(figCaption+tileSide+figPad)); got != want {
		t.Fatalf("figure is %v; want %v", got, want)
	}
	// at is the colour of HR pixel (x, y) in the tile of view v, layer l.
	at := func(v, l, x, y int) color.RGBA {
		px := img.At(figPad+l*(tileSide+figPad)+x*figScale, figCaption+v*(figCaption+tileSide+figPad)+figCaption+y*figScale)
		return color.RGBAModel.Convert(px).(color.RGBA)
	}
	dim := color.RGBA{uint8(dimmed * 200), uint8(dimmed * 200), uint8(dimmed * 200), 255}
	tests := []struct {
		name       string
		v, l, x, y int
		want       color.RGBA
	}{
		{"selected centre inside", 0, 0, 12, 12, grey},
		{"selected centre border", 0, 0, 8, 12, figGrid},
		{"unselected corner", 0, 0, 4, 4, dim},
		{"layer 2 corner selected", 0, 1, 4, 4, grey},
		{"layer 2 centre unselected", 0, 1, 12, 12, dim},
		{"box border", 0, 0, 17, 19, figBox},
		{"inside the box", 0, 0, 19, 19, dim},
		{"second view, layer 1 corner", 1, 0, 4, 4, grey},
		{"second view, no box", 1, 0, 17, 19, dim},
	}
	for _, tt := range tests {
		if got := at(tt.v, tt.l, tt.x, tt.y); got != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, got, tt.want)
		}
	}
	if got := countColour(img, figRight); got == 0 {
		t.Error("no green caption for the right answer")
	}
	if got := countColour(img, figWrong); got == 0 {
		t.Error("no red caption for the wrong answer")
	}
	if _, err := SelectionPNG(nil, ops.CellGrid{G: 3, Zg: 3}); err == nil {
		t.Error("SelectionPNG of no view: no error")
	}
}

// TestCoverage: the share of the HR tokens a box overlaps whose cell is selected, on a 6×6-token view of 4
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
