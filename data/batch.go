package data

import "github.com/flextrain/flextrain/internal/llava"

// Batch is what one training step reads: B samples right-padded to the longest token sequence.
// T counts token ids (the image marker is one id here; the model expands it to n image tokens).
type Batch struct {
	IDs           []string            // record ids, for logs and tests
	InputIDs      [][]int             // [B][T], llava.ImageTokenID marks the image, PAD after the end
	AttentionMask [][]int             // [B][T], 1 real, 0 pad
	Labels        [][]int             // [B][T], llava.IgnoreIndex where unsupervised and on padding
	LRPixels      [][]float32         // per sample [3*S*S], nil for text-only
	HRPixels      [][]float32         // per sample [3*ZS*ZS], nil for text-only
	OriSizes      [][2]int            // (w, h), (0, 0) for text-only
	Tags          []map[string]string // per sample, the record's tags (nil without)
	Boxes         [][]int             // per sample, the record's box (nil without)
}

// Len is the number of samples B.
func (b *Batch) Len() int { return len(b.IDs) }

// collate right-pads samples with pad (as LLaVA's collator: ids padded with pad_token_id, labels with
// llava.IgnoreIndex, attention mask 1 on real tokens).
func collate(samples []*Sample, pad int) *Batch {
	t := 0
	for _, s := range samples {
		t = max(t, len(s.InputIDs))
	}
	b := &Batch{}
	for _, s := range samples {
		ids, mask, labels := make([]int, t), make([]int, t), make([]int, t)
		n := copy(ids, s.InputIDs)
		copy(labels, s.Labels)
		for j := range t {
			if j < n {
				mask[j] = 1
				continue
			}
			ids[j], labels[j] = pad, llava.IgnoreIndex
		}
		b.IDs, b.Tags, b.Boxes = append(b.IDs, s.ID), append(b.Tags, s.Tags), append(b.Boxes, s.Box)
		b.InputIDs, b.AttentionMask, b.Labels = append(b.InputIDs, ids), append(b.AttentionMask, mask), append(b.Labels, labels)
		var lr, hr []float32
		var size [2]int
		if s.Pixels != nil {
			lr, hr, size = s.Pixels.LR, s.Pixels.HR, s.Pixels.OriSize
		}
		b.LRPixels, b.HRPixels, b.OriSizes = append(b.LRPixels, lr), append(b.HRPixels, hr), append(b.OriSizes, size)
	}
	return b
}
