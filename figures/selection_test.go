package figures

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"

	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/model/ops"
)

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
	views := []inference.SelectionView{
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
