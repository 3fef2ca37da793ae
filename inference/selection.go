package inference

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"
	"github.com/flextrain/flextrain/internal/feed"

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
		return nil, fmt.Errorf("inference: selections: the run trained on flex.view %q, without FlexAttention", v)
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
		return nil, fmt.Errorf("inference: selections %s: %w", path, err)
	}
	defer l.Close()
	var views []SelectionView
	for len(views) < n {
		b, err := l.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("inference: selections %s: %w", path, err)
		}
		mb := feed.Batch(b)
		for s, id := range b.IDs {
			if len(views) == n || b.HRPixels[s] == nil || (kind != "" && meta[id].Kind != kind) {
				continue
			}
			v, err := tr.selectionView(mb, s, b.HRPixels[s])
			if err != nil {
				return nil, fmt.Errorf("inference: selections %s: record %s: %w", path, id, err)
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
func (tr *Trained) selectionView(b *model.Batch[float32], s int, hr []float32) (SelectionView, error) {
	eos := tr.Tokenizer.EOS()
	prompt, answer := eval.SplitAnswer(b, s, eos)
	if prompt == nil {
		return SelectionView{}, fmt.Errorf("no supervised answer")
	}
	d, err := model.NewDecoder(tr.Weights, prompt, 0, 1)
	if err != nil {
		return SelectionView{}, err
	}
	d.Suppress(tr.Suppressed())
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
	side, grid := v.HR.Bounds().Dx(), tr.CellGrid()
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

// CellGrid is the model's map from HR tokens to selection cells.
func (tr *Trained) CellGrid() ops.CellGrid {
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
