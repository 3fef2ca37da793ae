// Package feed turns the data loader's batches into the model's input. The loader and the model do not
// import each other (the leaf packages stay apart); the training loop, evaluation, inference and the vision
// pretraining all feed the model this one way.
package feed

import (
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model"
	"github.com/flextrain/flextrain/model/ops"
)

// Batch converts a loader batch to the model's input: the same token rows, and the pixels in float64 in
// buffers of mem (nil: fresh ones), which a graph built with the same arena hands back when it closes.
func Batch(b *data.Batch, mem *ops.Arena) *model.Batch {
	m := &model.Batch{InputIDs: b.InputIDs, AttentionMask: b.AttentionMask, Labels: b.Labels, OriSizes: b.OriSizes}
	for i := range b.InputIDs {
		m.LRPixels = append(m.LRPixels, Pixels(b.LRPixels[i], mem))
		m.HRPixels = append(m.HRPixels, Pixels(b.HRPixels[i], mem))
	}
	return m
}

// Pixels widens one image's float32 pixels to the model's float64 input, in a buffer of mem; nil (a
// text-only sample) stays nil.
func Pixels(x []float32, mem *ops.Arena) []float64 {
	if x == nil {
		return nil
	}
	y := ops.Buffer[float64](mem, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

// Supervised counts the labels other than the ignore index that a loss reads: every position but the first
// of each row (a row's first token predicts nothing).
func Supervised(labels [][]int) int {
	n := 0
	for _, row := range labels {
		for _, l := range row[min(1, len(row)):] {
			if l != llava.IgnoreIndex {
				n++
			}
		}
	}
	return n
}
