package model

import (
	"errors"
	"fmt"

	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model/ops"
)

// Batch is one input of the model (docs/DESIGN.md §5 and §10's inputs): right-padded token ids with at most one
// llava.ImageTokenID per sample, and for each sample with an image its LR pixels [3, S, S], HR pixels
// [3, Z·S, Z·S] and original size (w, h). Text-only samples have nil pixels. The pixels are float32 as the
// data loader decodes them, and enter a float32 model as they are; float64 where a float64 reference gives
// them with every bit (the golden cases). A model of the other type converts them once, exactly.
type Batch[P ops.Float] struct {
	InputIDs      [][]int
	AttentionMask [][]int
	Labels        [][]int
	LRPixels      [][]P
	HRPixels      [][]P
	OriSizes      [][2]int
	// Boxes, when not nil, holds per sample the region its question is about ([x0, y0, x1, y1] in original
	// pixels, nil for none): what the `oracle` selection strategy selects. Other strategies ignore it.
	Boxes [][]int
}

// asType is b with its pixels in T: b itself when they already are, else a copy with converted pixels.
func asType[T, P ops.Float](b *Batch[P]) *Batch[T] {
	if same, ok := any(b).(*Batch[T]); ok {
		return same
	}
	out := &Batch[T]{InputIDs: b.InputIDs, AttentionMask: b.AttentionMask, Labels: b.Labels, OriSizes: b.OriSizes, Boxes: b.Boxes}
	for i := range b.LRPixels {
		out.LRPixels = append(out.LRPixels, convert[T](b.LRPixels[i]))
		out.HRPixels = append(out.HRPixels, convert[T](b.HRPixels[i]))
	}
	return out
}

// convert copies x into a new slice of T; nil stays nil.
func convert[T, P ops.Float](x []P) []T {
	if x == nil {
		return nil
	}
	return ops.Convert[T](nil, x)
}

// Len is the number of samples.
func (b *Batch[P]) Len() int { return len(b.InputIDs) }

// layout is the assembled batch (docs/DESIGN.md §5): every row's source, labels and lengths.
type layout struct {
	B, N     int
	src      []ops.Source // [B·N]
	labels   [][]int      // [B][N] after assembly
	lens     []int        // real rows per sample
	imageAt  []int        // i0 per sample, -1 for text-only
	imageIdx []int        // per sample, its index among the image samples, -1 for text-only
	images   int          // samples with an image
}

// Validate returns every problem of the batch for the model of cfg, one per line, or nil.
func (b *Batch[P]) Validate(cfg Config) error {
	var errs []error
	if b.Len() == 0 {
		return errors.New("model: batch: no samples")
	}
	if len(b.AttentionMask) != b.Len() || len(b.Labels) != b.Len() || len(b.LRPixels) != b.Len() ||
		len(b.HRPixels) != b.Len() || len(b.OriSizes) != b.Len() {
		return fmt.Errorf("model: batch: %d samples but %d masks, %d labels, %d LR, %d HR images, %d sizes", b.Len(),
			len(b.AttentionMask), len(b.Labels), len(b.LRPixels), len(b.HRPixels), len(b.OriSizes))
	}
	if b.Boxes != nil && len(b.Boxes) != b.Len() {
		return fmt.Errorf("model: batch: %d samples but %d boxes", b.Len(), len(b.Boxes))
	}
	for i := range b.InputIDs {
		if err := b.validateSample(cfg, i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *Batch[P]) validateSample(cfg Config, i int) error {
	ids, mask, labels := b.InputIDs[i], b.AttentionMask[i], b.Labels[i]
	if len(mask) != len(ids) || len(labels) != len(ids) {
		return fmt.Errorf("model: batch: sample %d: %d ids, %d mask entries, %d labels", i, len(ids), len(mask), len(labels))
	}
	images := 0
	for t, id := range ids {
		switch {
		case mask[t] == 0:
		case id == llava.ImageTokenID:
			images++
		case id < 0 || id >= cfg.Text.VocabSize:
			return fmt.Errorf("model: batch: sample %d position %d: token id %d outside the vocabulary of %d", i, t, id, cfg.Text.VocabSize)
		}
		if l := labels[t]; l != llava.IgnoreIndex && (l < 0 || l >= cfg.Text.VocabSize) {
			return fmt.Errorf("model: batch: sample %d position %d: label %d outside the vocabulary of %d", i, t, l, cfg.Text.VocabSize)
		}
	}
	S, Z := cfg.Vision.ImageSize, cfg.Flex.Zoom
	switch {
	case images > 1:
		return fmt.Errorf("model: batch: sample %d has %d images; at most one is allowed", i, images)
	case images == 1 && len(b.LRPixels[i]) != 3*S*S:
		return fmt.Errorf("model: batch: sample %d: LR pixels have %d values, want 3×%d×%d", i, len(b.LRPixels[i]), S, S)
	case images == 1 && len(b.HRPixels[i]) != 3*Z*S*Z*S:
		return fmt.Errorf("model: batch: sample %d: HR pixels have %d values, want 3×%d×%d", i, len(b.HRPixels[i]), Z*S, Z*S)
	}
	return nil
}

// assemble lays out the batch: padding dropped, the image id replaced by the n LR feature rows (labels
// llava.IgnoreIndex there) followed by hrSeq HR feature rows (the hd-seq baseline; 0 otherwise), then
// right-padded to the longest sample.
func (b *Batch[P]) assemble(n, hrSeq int) layout {
	lay := layout{B: b.Len()}
	var rows [][]ops.Source
	for i, ids := range b.InputIDs {
		var src []ops.Source
		var lab []int
		at, idx := -1, -1
		for t, id := range ids {
			if b.AttentionMask[i][t] == 0 {
				continue
			}
			if id != llava.ImageTokenID {
				src, lab = append(src, ops.Source{Kind: ops.FromToken, Index: id}), append(lab, b.Labels[i][t])
				continue
			}
			at, idx = len(src), lay.images
			for j := 0; j < n; j++ {
				src, lab = append(src, ops.Source{Kind: ops.FromImage, Index: lay.images*n + j}), append(lab, llava.IgnoreIndex)
			}
			for j := 0; j < hrSeq; j++ {
				src, lab = append(src, ops.Source{Kind: ops.FromHR, Index: lay.images*hrSeq + j}), append(lab, llava.IgnoreIndex)
			}
			lay.images++
		}
		rows, lay.labels = append(rows, src), append(lay.labels, lab)
		lay.lens, lay.imageAt, lay.imageIdx = append(lay.lens, len(src)), append(lay.imageAt, at), append(lay.imageIdx, idx)
		lay.N = max(lay.N, len(src))
	}
	for i, src := range rows {
		for len(src) < lay.N {
			src, lay.labels[i] = append(src, ops.Pad), append(lay.labels[i], llava.IgnoreIndex)
		}
		lay.src = append(lay.src, src...)
	}
	return lay
}

// hrRows returns, per sample, the rows that see HR tokens (docs/DESIGN.md §7): in training the rows r with
// labels[r+1] ≠ llava.IgnoreIndex, in inference the last real row; only samples with an image have any.
func (l layout) hrRows(train bool) [][]int {
	out := make([][]int, l.B)
	for b := 0; b < l.B; b++ {
		if l.imageAt[b] < 0 {
			continue
		}
		if !train {
			out[b] = []int{l.lens[b] - 1}
			continue
		}
		for r := 0; r+1 < l.N; r++ {
			if l.labels[b][r+1] != llava.IgnoreIndex {
				out[b] = append(out[b], r)
			}
		}
	}
	return out
}

// lossRows returns the rows of [B·N] whose target is supervised, in order (nil when there are none).
func (l layout) lossRows() []int {
	var out []int
	for i, t := range l.targets() {
		if t != llava.IgnoreIndex {
			out = append(out, i)
		}
	}
	return out
}

// targets returns, per row, the label the row predicts (labels[r+1]), llava.IgnoreIndex for the last row.
func (l layout) targets() []int {
	out := make([]int, 0, l.B*l.N)
	for b := 0; b < l.B; b++ {
		for r := 0; r < l.N; r++ {
			t := llava.IgnoreIndex
			if r+1 < l.N {
				t = l.labels[b][r+1]
			}
			out = append(out, t)
		}
	}
	return out
}
