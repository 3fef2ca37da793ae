package ops

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// SelectPlan is what the selection of docs/DESIGN.md §8 needs beside the layer's queries and keys.
type SelectPlan struct {
	Layout
	Rows      [][]int  // per sample, the HR rows; nil for text-only samples
	ImageAt   []int    // per sample, i0: the first LR image row (ignored for text-only samples)
	OriSizes  [][2]int // per sample, the original (w, h) of the image
	Boxes     [][]int  // per sample, the oracle strategy's box in original pixels (nil: none)
	Grid      int      // g: LR grid side (n = g² image tokens)
	Cells     int      // G: selection grid side
	Threshold float64  // on the 0…255 scale
	Strategy  string   // attention, topk, random, center
	Ratio     float64  // topk, random, center
	Seed      uint64   // random: with Step and Layer, seeds the generator of each sample
	Step      int
	Layer     int
	// Attention, when not nil, receives each sample's image attention of its HR rows (imageAttention's
	// result) as Select computes it: the model's feature cache keeps that of the frozen layer n_sa − 1, and
	// SelectFrom chooses from it again.
	Attention [][][]float64
}

// Select chooses, for every HR row, the selection cells its next layer attends to (docs/DESIGN.md §8), from the
// plain attention of this layer recomputed from q and k [B·N, H·dh]. The result [B·N, G²] holds 1 for a
// selected cell; it carries no gradient.
func Select(q, k *G.Node, plan *SelectPlan) (*G.Node, error) {
	op := &fnOp{name: "Select", args: plan}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		return tensor.Shape{plan.B * plan.N, plan.Cells * plan.Cells}, nil
	}
	op.do = pick(selectDo[float32](plan), selectDo[float64](plan))
	return apply(op, 2, q, k)
}

func selectDo[T Float](plan *SelectPlan) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		q, k := slice[T](v[0]), slice[T](v[1])
		nc := plan.Cells * plan.Cells
		out, cells := alloc[T](m, plan.B*plan.N, nc)
		errs := make([]error, plan.B)
		parallel(plan.B, func(b int) { errs[b] = selectSample(plan, b, q, k, cells) }) // samples own their rows
		return out, errors.Join(errs...)
	}
}

// selectSample writes the selected cells of sample b's HR rows into cells [B·N, G²].
func selectSample[T Float](plan *SelectPlan, b int, q, k, cells []T) error {
	att := imageAttention(plan, b, q, k)
	if plan.Attention != nil {
		plan.Attention[b] = att
	}
	return chooseCells(plan, b, att, cells)
}

// SelectFrom sets cells [B·N, G²], zeros, to the cells Select chooses from q and k, given instead each
// sample's image attention of its HR rows (as SelectPlan.Attention received it; nil for a sample without).
func SelectFrom[T Float](plan *SelectPlan, att [][][]float64, cells []T) error {
	if len(att) != plan.B || len(cells) != plan.B*plan.N*plan.Cells*plan.Cells {
		return fmt.Errorf("ops: SelectFrom: %d samples' attention and %d cells for a plan of %d×%d", len(att), len(cells), plan.B, plan.N)
	}
	var errs []error
	for b := range plan.B {
		if len(att[b]) != len(plan.Rows[b]) {
			return fmt.Errorf("ops: SelectFrom: sample %d has %d HR rows but attention for %d", b, len(plan.Rows[b]), len(att[b]))
		}
		errs = append(errs, chooseCells(plan, b, att[b], cells))
	}
	return errors.Join(errs...)
}

// chooseCells writes the cells sample b's HR rows choose from their image attention att into cells [B·N, G²].
// att is left as it is.
func chooseCells[T Float](plan *SelectPlan, b int, att [][]float64, cells []T) error {
	nc := plan.Cells * plan.Cells
	var rng *rand.Rand
	if plan.Strategy == "random" {
		rng = rand.New(rand.NewPCG(plan.Seed, RandomStream(plan.Step, b, plan.Layer)))
	}
	for i, r := range plan.Rows[b] {
		sel, err := SelectCells(slices.Clone(att[i]), plan.Grid, plan.Cells, plan.image(b), plan.Threshold, plan.Strategy, plan.Ratio, rng)
		if err != nil {
			return err
		}
		row := cells[(b*plan.N+r)*nc:][:nc]
		for i, s := range sel {
			if s {
				row[i] = 1
			}
		}
	}
	return nil
}

// image is sample b's original size and box.
func (plan *SelectPlan) image(b int) Image {
	im := Image{Size: plan.OriSizes[b]}
	if plan.Boxes != nil {
		im.Box = plan.Boxes[b]
	}
	return im
}

// RandomStream is the stream of the random strategy's generator for (step, sample, layer), as docs/DESIGN.md §8's
// seeding by (seed, step, sample, layer); the seed is the generator's other half.
func RandomStream(step, sample, layer int) uint64 {
	return (uint64(step)*1009+uint64(sample))*1009 + uint64(layer)
}

// imageAttention returns, for each HR row r of sample b, a = Σ_heads P_plain[r, i0 : i0+n] as [g, g]
// row-major. The scores are one multiply per head, as the attention's forward pass computes them.
func imageAttention[T Float](plan *SelectPlan, b int, q, k []T) [][]float64 {
	lay, rows := plan.Layout, plan.Rows[b]
	W, dh, n, L, R := lay.Heads*lay.HeadDim, lay.HeadDim, plan.Grid*plan.Grid, lay.Lens[b], len(rows)
	i0 := plan.ImageAt[b]
	if R == 0 {
		return nil
	}
	qr := make([]T, R*W)
	for i, r := range rows {
		copy(qr[i*W:(i+1)*W], q[(b*lay.N+r)*W:][:W])
	}
	att := make([][]float64, R)
	for i := range att {
		att[i] = make([]float64, n)
	}
	S := make([]T, R*L)
	scale := T(1 / math.Sqrt(float64(dh)))
	for h := 0; h < lay.Heads; h++ {
		matmulLD(false, true, R, L, dh, scale, qr[h*dh:], W, headAt(k, lay, b, h), W, 0, S, L)
		for i, r := range rows {
			nk := lay.keys(b, r)
			row := S[i*L : i*L+nk]
			softmax(row)
			for t := 0; t < n && i0+t < nk; t++ {
				att[i][t] += float64(row[i0+t])
			}
		}
	}
	return att
}

// PadMargin is m = ⌊⌊|w − h|/2⌋ / max(w, h) · g⌋ in float64, in that order (docs/DESIGN.md §8 step 2): the rows
// (w > h) or columns (h > w) [0, m) and [g − m, g) of the LR grid that hold only pad-to-square margin.
func PadMargin(w, h, g int) int {
	if w <= 0 || h <= 0 {
		return 0
	}
	d := w - h
	if d < 0 {
		d = -d
	}
	return int(math.Floor(float64(d/2) / float64(max(w, h)) * float64(g)))
}

// Image is what the selection knows of a sample's image: its original size (w, h) and, for the oracle
// strategy, the box [x0, y0, x1, y1] (original pixels) its question is about.
type Image struct {
	Size [2]int
	Box  []int
}

// SelectCells runs docs/DESIGN.md §8 steps 2–5 (or an ablation strategy) on one row's image attention a [g·g]
// and returns the G² selected cells, row-major. The oracle strategy ignores a and selects the cells that
// img.Box covers: the upper bound of a selection that knows where the answer lies.
func SelectCells(a []float64, g, G int, img Image, threshold float64, strategy string, ratio float64, rng *rand.Rand) ([]bool, error) {
	zeroMargin(a, g, img.Size)
	k := int(math.Ceil(ratio * float64(G*G)))
	switch strategy {
	case "oracle":
		return BoxCells(img.Box, img.Size, G), nil
	case "attention":
		return pool(thresholded(a, threshold), g, G), nil
	case "topk":
		return firstK(rankDesc(poolMax(a, g, G)), G*G, k), nil
	case "center":
		return firstK(centreOrder(G), G*G, k), nil
	case "random":
		out := make([]bool, G*G)
		for i := range out {
			out[i] = rng.Float64() < ratio
		}
		return out, nil
	}
	return nil, fmt.Errorf("ops: unknown selection strategy %q", strategy)
}

// BoxCells returns the G×G cells (row-major) of the padded square that box [x0, y0, x1, y1] of a w×h image
// overlaps (ori = (w, h)); nothing for a box that is not four numbers or an image without size. The image
// is padded to a square of side max(w, h), centred, as the loader pads it; cell (i, j) covers
// [j·side/G, (j+1)·side/G) × [i·side/G, (i+1)·side/G) of it.
func BoxCells(box []int, ori [2]int, G int) []bool {
	out := make([]bool, G*G)
	side := max(ori[0], ori[1])
	if len(box) != 4 || side <= 0 || G <= 0 {
		return out
	}
	x0, y0 := box[0]+(side-ori[0])/2, box[1]+(side-ori[1])/2
	x1, y1 := box[2]+(side-ori[0])/2, box[3]+(side-ori[1])/2
	cell := func(v int) int { return min(max(v*G/side, 0), G-1) } // the cell holding pixel v, clamped
	if x1 <= x0 || y1 <= y0 {
		return out
	}
	for i := cell(y0); i <= cell(y1-1); i++ {
		for j := cell(x0); j <= cell(x1-1); j++ {
			out[i*G+j] = true
		}
	}
	return out
}

// zeroMargin zeroes the pad-to-square margin of a [g, g].
func zeroMargin(a []float64, g int, ori [2]int) {
	m := PadMargin(ori[0], ori[1], g)
	for i := 0; i < g; i++ {
		for j := 0; j < g; j++ {
			inRows := ori[0] > ori[1] && (i < m || i >= g-m)
			inCols := ori[1] > ori[0] && (j < m || j >= g-m)
			if m > 0 && (inRows || inCols) {
				a[i*g+j] = 0
			}
		}
	}
}

// thresholded min-max normalises a over all entries and marks 255·a > threshold; max = min marks nothing.
func thresholded(a []float64, threshold float64) []bool {
	lo, hi := a[0], a[0]
	for _, v := range a {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	c := make([]bool, len(a))
	if hi == lo {
		return c
	}
	for i, v := range a {
		c[i] = 255*((v-lo)/(hi-lo)) > threshold
	}
	return c
}

// window is the adaptive max-pool window of output cell i: input [⌊i·g/G⌋, ⌈(i+1)·g/G⌉).
func window(i, g, G int) (int, int) { return i * g / G, ((i+1)*g + G - 1) / G }

// pool is the adaptive max-pool [g, g] → [G, G] of a 0/1 map: a cell is set if any covered entry is.
func pool(c []bool, g, G int) []bool {
	v := make([]float64, len(c))
	for i, b := range c {
		if b {
			v[i] = 1
		}
	}
	out := make([]bool, G*G)
	for i, m := range poolMax(v, g, G) {
		out[i] = m > 0
	}
	return out
}

// poolMax is the adaptive max-pool [g, g] → [G, G].
func poolMax(a []float64, g, G int) []float64 {
	out := make([]float64, G*G)
	for ci := 0; ci < G; ci++ {
		r0, r1 := window(ci, g, G)
		for cj := 0; cj < G; cj++ {
			c0, c1 := window(cj, g, G)
			m := math.Inf(-1)
			for i := r0; i < r1; i++ {
				for j := c0; j < c1; j++ {
					m = math.Max(m, a[i*g+j])
				}
			}
			out[ci*G+cj] = m
		}
	}
	return out
}

// rankDesc orders cell indices by decreasing value, ties by row-major order.
func rankDesc(v []float64) []int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] > v[idx[b]] })
	return idx
}

// centreOrder orders cells by the squared distance of their centres to the grid centre, ties row-major.
func centreOrder(G int) []int {
	d := make([]float64, G*G)
	for i := 0; i < G; i++ {
		for j := 0; j < G; j++ {
			di, dj := float64(i)+0.5-float64(G)/2, float64(j)+0.5-float64(G)/2
			d[i*G+j] = -(di*di + dj*dj)
		}
	}
	return rankDesc(d)
}

// firstK marks the first k cells of order.
func firstK(order []int, n, k int) []bool {
	out := make([]bool, n)
	for _, i := range order[:min(k, len(order))] {
		out[i] = true
	}
	return out
}
