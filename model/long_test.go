package model

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
)

// TestLongSequenceDecoderMatchesGraph compares the graph with the row-by-row decoder (an independent code
// path: no GEMM in attention) on sequences longer than the golden cases, in float64.
func TestLongSequenceDecoderMatchesGraph(t *testing.T) {
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_infer.safetensors"))
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, T := range []int{40, 56, 80, 130} {
		ids := make([]int, T)
		for i := range ids {
			ids[i] = 1 + rng.IntN(gc.cfg.Text.VocabSize-1)
		}
		ids[5] = llava.ImageTokenID
		one := sampleBatch(gc.batch, 0, ids)
		m, _ := runLoss(t, w, one, Options{Mode: Infer, Alpha: 1})
		d, err := NewDecoder(w, one, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		got := d.Prefill()
		V := gc.cfg.Text.VocabSize
		last := m.Lens()[0] - 1
		want := m.Logits().Data().([]float64)[last*V : (last+1)*V]
		if e := relErr(got, want, nil); e > 1e-12 {
			t.Errorf("T %d: decoder and graph last-row logits differ by %.3g", T, e)
		}
		m.Close()
	}
}
