package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"
	"github.com/flextrain/flextrain/internal/feed"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/flextrain/flextrain/checkpoints"
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/ops"
)

// SelectionView is one test image with the HR cells FlexAttention attended to when predicting the first
// token of its answer (the prompt's last row, the one HR row of inference).
type SelectionView struct {
	ID        string
	Answer    string      // the reference answer
	Predicted string      // the greedy answer
	HR        *image.RGBA // the HR view the model read: padded to square, Z·S pixels a side
	Cells     [][]bool    // per FlexAttention layer n_sa…L−1, the G×G cells, row-major
	// Box is the record's target in HR pixels (its "box" mapped through the padding and resize, rounded
	// outwards), empty when the record has none; Coverage is, per layer, the fraction of the HR tokens
	// overlapping it that the layer attended to (NaN without a box). InCrop says, per layer, whether the
	// layer attended to some HR token of the crop that holds the box's centre: the vision tower mixes a
	// crop's tokens (docs/DESIGN.md §4), so any of them may carry what the box shows.
	Box      image.Rectangle
	Coverage []float64
	InCrop   []bool
}

// Selections decodes the first n image records of the data file whose kind is kind (every image record when
// kind is empty), in file order, and returns what each selected.
func (tr *Trained) Selections(ctx context.Context, path, imageFolder, kind string, n int) ([]SelectionView, error) {
	if v := tr.Config.Flex.View; v != "flex" {
		return nil, fmt.Errorf("train: selections: the run trained on flex.view %q, without FlexAttention", v)
	}
	if imageFolder == "" {
		imageFolder = tr.Config.ImageFolder
	}
	recs, err := eval.ReadRecords(path)
	if err != nil {
		return nil, err
	}
	meta := map[string]eval.Record{}
	for _, r := range recs {
		meta[r.IDString()] = r
	}
	l, err := data.Open(config.EvalDataOptions(tr.Config, tr.Tokenizer, path, imageFolder))
	if err != nil {
		return nil, fmt.Errorf("train: selections %s: %w", path, err)
	}
	defer l.Close()
	var views []SelectionView
	for len(views) < n {
		b, err := l.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("train: selections %s: %w", path, err)
		}
		mb := feed.Batch(b, nil)
		for s, id := range b.IDs {
			if len(views) == n || b.HRPixels[s] == nil || (kind != "" && meta[id].Kind != kind) {
				continue
			}
			v, err := tr.selectionView(mb, s, b.HRPixels[s])
			if err != nil {
				return nil, fmt.Errorf("train: selections %s: record %s: %w", path, id, err)
			}
			v.ID = id
			tr.cover(&v, meta[id].Box, b.OriSizes[s])
			views = append(views, v)
		}
	}
	return views, nil
}

// selectionView decodes sample s of b from its prompt and records the cells of the prompt's last row; hr is
// the sample's HR view as the loader made it.
func (tr *Trained) selectionView(b *model.Batch, s int, hr []float32) (SelectionView, error) {
	eos := tr.Tokenizer.EOS()
	prompt, answer := eval.SplitAnswer(b, s, eos)
	if prompt == nil {
		return SelectionView{}, fmt.Errorf("no supervised answer")
	}
	d, err := model.NewDecoder(tr.Weights, prompt, 0, 1)
	if err != nil {
		return SelectionView{}, err
	}
	logits := d.Prefill()
	cells := d.Selected()
	got, err := d.Greedy(logits, eval.MaxAnswer, eos)
	if err != nil {
		return SelectionView{}, err
	}
	side := tr.Config.Flex.Zoom * tr.Config.Arch.Vision.ImageSize
	return SelectionView{Answer: decodeAnswer(tr.Tokenizer, answer), Predicted: decodeAnswer(tr.Tokenizer, got),
		HR: data.Denormalize(hr, side), Cells: cells}, nil
}

// cover sets the view's Box from the record's box (original pixels of an image of size ori) and the
// fraction of the box's HR tokens each layer attended to.
func (tr *Trained) cover(v *SelectionView, box []int, ori [2]int) {
	v.Coverage = make([]float64, len(v.Cells))
	if len(box) != 4 {
		for i := range v.Coverage {
			v.Coverage[i] = math.NaN()
		}
		return
	}
	side, grid := v.HR.Bounds().Dx(), tr.cellGrid()
	v.Box = hrBox(box, ori, side)
	v.InCrop = make([]bool, len(v.Cells))
	for i, cells := range v.Cells {
		v.Coverage[i] = coverage(v.Box, cells, grid, side)
		v.InCrop[i] = inCrop(v.Box, cells, grid, side, tr.Config.Flex.Zoom)
	}
}

// inCrop says whether a selected cell covers some HR token of the crop (one of the zoom×zoom that the
// vision tower reads apart) that holds the centre of box.
func inCrop(box image.Rectangle, cells []bool, grid ops.CellGrid, side, zoom int) bool {
	crop, g := side/zoom, grid.Zg/zoom // pixels and tokens a crop spans
	a, b := (box.Min.Y+box.Max.Y)/2/crop, (box.Min.X+box.Max.X)/2/crop
	for r := a * g; r < (a+1)*g; r++ {
		for c := b * g; c < (b+1)*g; c++ {
			if cells[grid.Cell(r, c)] {
				return true
			}
		}
	}
	return false
}

// coverage is the fraction of the HR tokens overlapping box (HR pixels of a view side pixels wide) whose
// cell is selected; 0 for an empty box.
func coverage(box image.Rectangle, cells []bool, grid ops.CellGrid, side int) float64 {
	p := side / grid.Zg // HR pixels per token
	covered, all := 0, 0
	for r := box.Min.Y / p; r*p < box.Max.Y; r++ {
		for c := box.Min.X / p; c*p < box.Max.X; c++ {
			all++
			if cells[grid.Cell(r, c)] {
				covered++
			}
		}
	}
	return float64(covered) / float64(max(all, 1))
}

// hrBox maps a box [x0, y0, x1, y1] of an original w×h image into the HR view of side pixels: shifted by the
// padding to a square, scaled to side, rounded outwards and clipped to the view.
func hrBox(box []int, ori [2]int, side int) image.Rectangle {
	o := data.SquareOffset(ori[0], ori[1])
	scale := float64(side) / float64(max(ori[0], ori[1]))
	at := func(v, off int, round func(float64) float64) int { return int(round(float64(v+off) * scale)) }
	r := image.Rect(at(box[0], o.X, math.Floor), at(box[1], o.Y, math.Floor), at(box[2], o.X, math.Ceil), at(box[3], o.Y, math.Ceil))
	return r.Intersect(image.Rect(0, 0, side, side))
}

// cellGrid is the model's map from HR tokens to selection cells.
func (tr *Trained) cellGrid() ops.CellGrid {
	_, _, zg, _ := tr.Weights.Config().Grid()
	return ops.CellGrid{G: tr.Config.Flex.SelectGrid, Zg: zg}
}

// LayerSelection summarises the views' selections in one FlexAttention layer.
type LayerSelection struct {
	Selected float64 `json:"selected"` // mean fraction of the cells attended to
	Covered  float64 `json:"covered"`  // mean fraction of the target box's HR tokens attended to, over views with a box
	Hit      float64 `json:"hit"`      // fraction of the views with a box where some of the box was attended to
	Crop     float64 `json:"crop"`     // fraction of the views with a box where some of its crop was attended to
	Boxes    int     `json:"boxes"`    // views with a box
}

// SummarizeSelections averages the views' selections per FlexAttention layer.
func SummarizeSelections(views []SelectionView) []LayerSelection {
	if len(views) == 0 {
		return nil
	}
	out := make([]LayerSelection, len(views[0].Cells))
	for i := range out {
		s := &out[i]
		for _, v := range views {
			s.Selected += fraction(v.Cells[i]) / float64(len(views))
			if c := v.Coverage[i]; !math.IsNaN(c) {
				s.Covered, s.Boxes = s.Covered+c, s.Boxes+1
				if c > 0 {
					s.Hit++
				}
				if v.InCrop[i] {
					s.Crop++
				}
			}
		}
		if s.Boxes > 0 {
			n := float64(s.Boxes)
			s.Covered, s.Hit, s.Crop = s.Covered/n, s.Hit/n, s.Crop/n
		}
	}
	return out
}

// fraction is the share of true values.
func fraction(cells []bool) float64 {
	n := 0
	for _, c := range cells {
		if c {
			n++
		}
	}
	return float64(n) / float64(max(len(cells), 1))
}

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
func SelectionPNG(views []SelectionView, grid ops.CellGrid) ([]byte, error) {
	if len(views) == 0 {
		return nil, fmt.Errorf("train: selection figure: no image to draw")
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
			return nil, fmt.Errorf("train: selection figure: view %s differs in size from the first", v.ID)
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
		return nil, fmt.Errorf("train: selection figure: encode PNG: %w", err)
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

// WriteSelectionPNG draws the views (SelectionPNG) to the file out, written atomically.
func (tr *Trained) WriteSelectionPNG(views []SelectionView, out string) error {
	b, err := SelectionPNG(views, tr.cellGrid())
	if err != nil {
		return err
	}
	if err := checkpoints.WriteFileAtomic(out, b); err != nil {
		return fmt.Errorf("train: selection figure: %w", err)
	}
	return nil
}
