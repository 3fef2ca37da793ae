package inference

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"slices"

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
	Size      [2]int      // the original image's (w, h)
	Cells     [][]bool    // per FlexAttention layer n_sa…L−1, the G×G cells, row-major
	// Box is the record's target in HR pixels (its "box" mapped through the padding and resize, rounded
	// outwards), empty when the record has none; Coverage is, per layer, the fraction of the HR tokens
	// overlapping it that the layer attended to (NaN without a box). InCrop says, per layer, whether the
	// layer attended to some HR token of the crop that holds the box's centre: the vision tower mixes a
	// crop's tokens (docs/DESIGN.md §4), so any of them may carry what the box shows.
	Box      image.Rectangle
	Coverage []float64
	InCrop   []bool
	// Others are the record's other objects ("others": a board's distractor signs) in HR pixels, and
	// OthersCoverage per layer the fraction of their HR tokens the layer attended to (NaN without others).
	Others         []image.Rectangle
	OthersCoverage []float64
	// Maps are, per layer, the image attention its selection ranked (model.Decoder.AttentionMaps: the
	// previous layer's last row over the g×g LR tokens, summed over heads). Mass is, per layer, the share of
	// that attention on the LR tokens under the box and, after it, under each of the others; Lift is the
	// same per token, over the whole map's mean per token (1: no more than a token's fair share), so that a
	// large sign's many tokens do not outweigh a small sign's few.
	Maps [][]float64
	Mass [][]float64
	Lift [][]float64
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
			v.ID, v.Size = id, b.OriSizes[s]
			tr.cover(&v, meta[id].Box, b.OriSizes[s])
			tr.coverOthers(&v, meta[id], b.OriSizes[s])
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
	cells, maps := d.Selected(), d.AttentionMaps()
	got, err := d.Greedy(logits, eval.MaxAnswer, eos)
	if err != nil {
		return SelectionView{}, err
	}
	side := tr.Config.Flex.Zoom * tr.Config.Arch.Vision.ImageSize
	return SelectionView{Answer: decodeAnswer(tr.Tokenizer, answer), Predicted: decodeAnswer(tr.Tokenizer, got),
		HR: data.Denormalize(hr, side), Cells: cells, Maps: maps}, nil
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

// coverOthers sets the view's Others, their coverage per layer, and the attention mass per layer on the
// target and on each of the others.
func (tr *Trained) coverOthers(v *SelectionView, rec eval.Record, ori [2]int) {
	side, grid := v.HR.Bounds().Dx(), tr.CellGrid()
	for _, o := range rec.Others {
		if len(o) == 4 {
			v.Others = append(v.Others, hrBox(o, ori, side))
		}
	}
	v.OthersCoverage = make([]float64, len(v.Cells))
	for i, cells := range v.Cells {
		v.OthersCoverage[i] = math.NaN()
		if len(v.Others) > 0 {
			v.OthersCoverage[i] = coverageAll(v.Others, cells, grid, side)
		}
	}
	g, _, _, _ := tr.Weights.Config().Grid()
	if len(rec.Box) != 4 {
		return
	}
	boxes := append([][]int{rec.Box}, rec.Others...)
	for _, m := range v.Maps {
		var mass, lift []float64
		if len(m) == g*g {
			mass, lift = massUnder(m, boxes, ori, g)
		}
		v.Mass, v.Lift = append(v.Mass, mass), append(v.Lift, lift)
	}
}

// massUnder is, per box (original pixels of a w×h image), the share of the attention map m [g·g] on the LR
// tokens the box overlaps, and that share per token over the map's mean share per token, 1/g² (0 for a box
// under no token).
func massUnder(m []float64, boxes [][]int, ori [2]int, g int) (mass, lift []float64) {
	total := 0.0
	for _, x := range m {
		total += x
	}
	mass, lift = make([]float64, len(boxes)), make([]float64, len(boxes))
	for i, b := range boxes {
		if len(b) != 4 || total <= 0 {
			continue
		}
		r := hrBox(b, ori, g) // in tokens: a view g pixels wide
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				mass[i] += m[y*g+x] / total
			}
		}
		if n := r.Dx() * r.Dy(); n > 0 {
			lift[i] = mass[i] / float64(n) * float64(g*g)
		}
	}
	return mass, lift
}

// coverageAll is the fraction of the HR tokens overlapping any of boxes (a token under two counted once)
// whose cell is selected; 0 when no token is.
func coverageAll(boxes []image.Rectangle, cells []bool, grid ops.CellGrid, side int) float64 {
	p := side / grid.Zg
	tokens := map[image.Point]bool{}
	for _, box := range boxes {
		for r := box.Min.Y / p; r*p < box.Max.Y; r++ {
			for c := box.Min.X / p; c*p < box.Max.X; c++ {
				tokens[image.Pt(c, r)] = true
			}
		}
	}
	covered := 0
	for t := range tokens {
		if cells[grid.Cell(t.Y, t.X)] {
			covered++
		}
	}
	return float64(covered) / float64(max(len(tokens), 1))
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
	return coverageAll([]image.Rectangle{box}, cells, grid, side)
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
	// Over the views with other objects (a board's distractors): the mean fraction of their HR tokens
	// attended to, and their number.
	OthersCovered float64 `json:"others_covered"`
	WithOthers    int     `json:"with_others"`
	// Over the views with a box and others, from the attention map the layer's selection ranked: the mean
	// share of its mass on the target's LR tokens and on one other object's; the same per token over the
	// map's mean per token (SelectionView.Lift); and how often the target's lift is above every other
	// object's.
	TargetMass  float64 `json:"target_mass"`
	OtherMass   float64 `json:"other_mass"`
	TargetLift  float64 `json:"target_lift"`
	OtherLift   float64 `json:"other_lift"`
	TargetFirst float64 `json:"target_first"`
	Massed      int     `json:"massed"`
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
		summarizeOthers(s, views, i)
	}
	return out
}

// summarizeOthers fills s's distractor coverage and attention mass from layer i of the views.
func summarizeOthers(s *LayerSelection, views []SelectionView, i int) {
	for _, v := range views {
		if i < len(v.OthersCoverage) && !math.IsNaN(v.OthersCoverage[i]) {
			s.OthersCovered, s.WithOthers = s.OthersCovered+v.OthersCoverage[i], s.WithOthers+1
		}
		if i >= len(v.Mass) || len(v.Mass[i]) < 2 || len(v.Lift[i]) != len(v.Mass[i]) {
			continue
		}
		others := len(v.Mass[i]) - 1
		s.Massed++
		s.TargetMass, s.TargetLift = s.TargetMass+v.Mass[i][0], s.TargetLift+v.Lift[i][0]
		first := true
		for k := 1; k <= others; k++ {
			s.OtherMass += v.Mass[i][k] / float64(others)
			s.OtherLift += v.Lift[i][k] / float64(others)
			first = first && v.Lift[i][0] > v.Lift[i][k]
		}
		if first {
			s.TargetFirst++
		}
	}
	if s.WithOthers > 0 {
		s.OthersCovered /= float64(s.WithOthers)
	}
	if s.Massed > 0 {
		n := float64(s.Massed)
		s.TargetMass, s.OtherMass, s.TargetFirst = s.TargetMass/n, s.OtherMass/n, s.TargetFirst/n
		s.TargetLift, s.OtherLift = s.TargetLift/n, s.OtherLift/n
	}
}

// Calibration is the share of cells the attention strategy would select at one threshold.
type Calibration struct {
	Threshold float64 `json:"threshold"`
	Selected  float64 `json:"selected"` // mean fraction of the cells, over the views
}

// Calibrate returns, for each threshold, the mean share of the cells that the attention strategy selects
// from the views' attention maps of the first FlexAttention layer (ranked from the frozen layer n_sa − 1's
// map, so the same at every training step): the threshold that gives an attention arm a chosen HR budget.
func (tr *Trained) Calibrate(views []SelectionView, thresholds []float64) ([]Calibration, error) {
	g, _, _, _ := tr.Weights.Config().Grid()
	G := tr.Config.Flex.SelectGrid
	out := make([]Calibration, len(thresholds))
	for i, th := range thresholds {
		out[i].Threshold = th
		for _, v := range views {
			if len(v.Maps) == 0 || len(v.Maps[0]) != g*g {
				return nil, fmt.Errorf("inference: calibrate: record %s has no attention map", v.ID)
			}
			cells, err := ops.SelectCells(slices.Clone(v.Maps[0]), g, G, ops.Image{Size: v.Size}, th, "attention", 0, nil)
			if err != nil {
				return nil, err
			}
			out[i].Selected += fraction(cells) / float64(len(views))
		}
	}
	return out, nil
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
