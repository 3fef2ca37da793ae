package model

import (
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"
)

// TestDecoderMatchesGraph decodes a few tokens with the KV cache and checks every step's logits against the
// graph run on the whole sequence with the same HR rows (each generated row sees HR tokens, as it did when
// it was the last row), in float64.
func TestDecoderMatchesGraph(t *testing.T) {
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_infer.safetensors"))
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	const steps = 4
	for s := 0; s < gc.batch.Len(); s++ {
		d, err := NewDecoder(w, gc.batch, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		ids := trimmed(gc.batch.InputIDs[s], gc.batch.AttentionMask[s])
		var got [][]float64
		logits := d.Prefill()
		for i := 0; i < steps; i++ {
			got = append(got, logits)
			next := argmax(logits)
			ids = append(ids, next)
			if logits, err = d.Step(next); err != nil {
				t.Fatal(err)
			}
		}
		one := sampleBatch(gc.batch, s, ids)
		rows := wholeRows(one, gc.cfg, steps)
		m, _ := runLoss(t, w, one, Options{Mode: Infer, Alpha: 1, HRRows: rows})
		V := gc.cfg.Text.VocabSize
		all := m.Logits().Data().([]float64)
		last := m.Lens()[0] - 1
		for i := 0; i < steps; i++ {
			r := last - steps + i
			if e := relErr(got[i], all[r*V:(r+1)*V], nil); e > 1e-12 {
				t.Errorf("sample %d step %d: cached logits differ from the graph by %.2e", s, i, e)
			}
		}
	}
}

func trimmed(ids, mask []int) []int {
	var out []int
	for i, id := range ids {
		if mask[i] != 0 {
			out = append(out, id)
		}
	}
	return out
}

// sampleBatch is sample s of b with new ids (all real tokens).
func sampleBatch(b *Batch, s int, ids []int) *Batch {
	mask, labels := make([]int, len(ids)), make([]int, len(ids))
	for i := range ids {
		mask[i], labels[i] = 1, IgnoreIndex
	}
	return &Batch{InputIDs: [][]int{ids}, AttentionMask: [][]int{mask}, Labels: [][]int{labels},
		LRPixels: b.LRPixels[s : s+1], HRPixels: b.HRPixels[s : s+1], OriSizes: b.OriSizes[s : s+1]}
}

// wholeRows marks the rows that saw HR tokens while decoding: the prompt's last row and every generated row,
// for an image sample; none for a text-only one.
func wholeRows(b *Batch, cfg Config, steps int) [][]int {
	_, n, _, _ := cfg.Grid()
	lay := b.assemble(n, 0)
	if lay.imageAt[0] < 0 {
		return [][]int{nil}
	}
	var rows []int
	for r := lay.lens[0] - 1 - steps; r < lay.lens[0]; r++ {
		rows = append(rows, r)
	}
	return [][]int{rows}
}
