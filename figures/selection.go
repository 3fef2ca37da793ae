package figures

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/internal/atomicfile"
	"github.com/flextrain/flextrain/model/ops"
)

// The figure's layout, in pixels, and its colours.
const (
	figScale   = 2  // HR pixels are drawn as 2×2 blocks
	figPad     = 8  // between tiles
	figCaption = 18 // one line of 7×13 text with its margin
)

var (
	figBackground = color.RGBA{255, 255, 255, 255}
	figText       = color.RGBA{0, 0, 0, 255}
	figRight      = color.RGBA{0, 130, 0, 255}
	figWrong      = color.RGBA{200, 0, 0, 255}
	figGrid       = color.RGBA{255, 215, 0, 255} // the outline of a selected cell
	figBox        = color.RGBA{0, 255, 255, 255} // the record's target box
)

// onBorder says whether HR pixel (x, y) lies on the one-pixel border just outside r (none when r is empty).
func onBorder(r image.Rectangle, x, y int) bool {
	if r.Empty() {
		return false
	}
	outer := image.Rect(r.Min.X-1, r.Min.Y-1, r.Max.X+1, r.Max.Y+1)
	return image.Pt(x, y).In(outer) && !image.Pt(x, y).In(r)
}

// dimmed is how much of an unselected cell's colour stays.
const dimmed = 0.3

// SelectionPNG draws one row per view: its caption (id, reference, prediction) over one tile per
// FlexAttention layer, the HR view with the cells that layer attended to at full brightness and outlined,
// the others dimmed, and the target box in cyan. grid maps the Zg×Zg HR tokens to the G×G cells.
func SelectionPNG(views []inference.SelectionView, grid ops.CellGrid) ([]byte, error) {
	if len(views) == 0 {
		return nil, fmt.Errorf("inference: selection figure: no image to draw")
	}
	side := views[0].HR.Bounds().Dx() * figScale
	layers := len(views[0].Cells)
	rowH := figCaption + side + figPad
	img := image.NewRGBA(image.Rect(0, 0, figPad+layers*(side+figPad), figCaption+len(views)*rowH))
	draw.Draw(img, img.Bounds(), image.NewUniform(figBackground), image.Point{}, draw.Src)
	for i := 0; i < layers; i++ {
		label(img, figPad+i*(side+figPad), figCaption-5, fmt.Sprintf("FlexAttention layer %d of %d", i+1, layers), figText)
	}
	for r, v := range views {
		if len(v.Cells) != layers || v.HR.Bounds().Dx()*figScale != side {
			return nil, fmt.Errorf("inference: selection figure: view %s differs in size from the first", v.ID)
		}
		y := figCaption + r*rowH
		caption, c := fmt.Sprintf("%s: answer %q, predicted %q", v.ID, v.Answer, v.Predicted), figWrong
		if v.Answer == v.Predicted {
			c = figRight
		}
		label(img, figPad, y+figCaption-5, caption, c)
		for i, cells := range v.Cells {
			tile(img, image.Pt(figPad+i*(side+figPad), y+figCaption), v.HR, v.Box, cells, grid)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("inference: selection figure: encode PNG: %w", err)
	}
	return buf.Bytes(), nil
}

// tile draws hr scaled by figScale at at, dimming the cells not selected, outlining those selected, and
// drawing the border of box (HR pixels; none when empty).
func tile(dst *image.RGBA, at image.Point, hr *image.RGBA, box image.Rectangle, cells []bool, grid ops.CellGrid) {
	side := hr.Bounds().Dx() * figScale
	token := func(v int) int { return v * grid.Zg / side } // the HR token row or column of figure pixel v
	cell := func(x, y int) int { return grid.Cell(token(y), token(x)) }
	edge := func(x, y int) bool {
		return x == 0 || y == 0 || x == side-1 || y == side-1 ||
			cell(x-1, y) != cell(x, y) || cell(x+1, y) != cell(x, y) || cell(x, y-1) != cell(x, y) || cell(x, y+1) != cell(x, y)
	}
	for y := 0; y < side; y++ {
		for x := 0; x < side; x++ {
			px := hr.RGBAAt(x/figScale, y/figScale)
			selected := cells[cell(x, y)]
			switch {
			case onBorder(box, x/figScale, y/figScale):
				px = figBox
			case selected && edge(x, y):
				px = figGrid
			case !selected:
				px = color.RGBA{uint8(dimmed * float64(px.R)), uint8(dimmed * float64(px.G)), uint8(dimmed * float64(px.B)), 255}
			}
			dst.SetRGBA(at.X+x, at.Y+y, px)
		}
	}
}

// label writes text with its baseline at (x, y).
func label(dst *image.RGBA, x, y int, text string, c color.Color) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(text)
}

// WriteSelectionPNG draws the views (SelectionPNG) with the cells of grid to the file out, written
// atomically.
func WriteSelectionPNG(views []inference.SelectionView, grid ops.CellGrid, out string) error {
	b, err := SelectionPNG(views, grid)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(out, b); err != nil {
		return fmt.Errorf("figures: %w", err)
	}
	return nil
}
