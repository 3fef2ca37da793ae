// Package feed turns the data loader's batches into the model's input. The loader and the model do not
// import each other (the leaf packages stay apart); the training loop, evaluation, inference and the vision
// pretraining all feed the model this one way.
package feed

import (
	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model"
)

// Batch is a loader batch as the model's input: the same token rows and the same float32 pixels, shared, not
// copied (the model reads them).
func Batch(b *data.Batch) *model.Batch[float32] {
	return &model.Batch[float32]{InputIDs: b.InputIDs, AttentionMask: b.AttentionMask, Labels: b.Labels,
		LRPixels: b.LRPixels, HRPixels: b.HRPixels, OriSizes: b.OriSizes, Boxes: b.Boxes}
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
