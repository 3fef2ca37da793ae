package model

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model/ops"
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
			next := argmax(logits, nil)
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
func sampleBatch(b *Batch[float64], s int, ids []int) *Batch[float64] {
	mask, labels := make([]int, len(ids)), make([]int, len(ids))
	for i := range ids {
		mask[i], labels[i] = 1, llava.IgnoreIndex
	}
	return &Batch[float64]{InputIDs: [][]int{ids}, AttentionMask: [][]int{mask}, Labels: [][]int{labels},
		LRPixels: b.LRPixels[s : s+1], HRPixels: b.HRPixels[s : s+1], OriSizes: b.OriSizes[s : s+1]}
}

// wholeRows marks the rows that saw HR tokens while decoding: the prompt's last row and every generated row,
// for an image sample; none for a text-only one.
func wholeRows(b *Batch[float64], cfg Config, steps int) [][]int {
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

// TestDecoderSelectedGolden: after Prefill, the decoder's cells per FlexAttention layer are the golden
// selection of the prompt's last row (the inference case's only HR row); text-only samples select none.
func TestDecoderSelectedGolden(t *testing.T) {
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_infer.safetensors"))
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	hr, shape := gc.ints(t, "expect.hr_rows")
	N := shape[1]
	_, _, zg, M := gc.cfg.Grid()
	grid := ops.CellGrid{G: gc.cfg.Flex.SelectGrid, Zg: zg}
	images := 0
	for s := 0; s < gc.batch.Len(); s++ {
		d, err := NewDecoder(w, gc.batch, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		d.Prefill()
		row := -1
		for r := 0; r < N; r++ {
			if hr[s*N+r] == 1 {
				row = r
			}
		}
		sel := d.Selected()
		if row < 0 {
			if sel != nil {
				t.Errorf("sample %d (text-only): selected %v; want none", s, sel)
			}
			continue
		}
		images++
		if len(sel) != gc.cfg.Text.NumLayers-gc.cfg.Flex.NSA {
			t.Fatalf("sample %d: %d layers of cells; want %d", s, len(sel), gc.cfg.Text.NumLayers-gc.cfg.Flex.NSA)
		}
		for i, cells := range sel {
			l := gc.cfg.Flex.NSA + i
			want, _ := gc.ints(t, fmt.Sprintf("expect.select.%d", l))
			got := make([]int, M)
			for _, tok := range grid.Tokens(func(c int) bool { return cells[c] }) {
				got[tok] = 1
			}
			if !slices.Equal(got, want[(s*N+row)*M:(s*N+row+1)*M]) {
				t.Errorf("sample %d layer %d: decoder selected %v; want the golden row %d", s, l, got, row)
			}
		}
	}
	if images == 0 {
		t.Fatal("the golden case has no image sample")
	}
}

// TestDecoderRandomPerImage: at inference the random strategy draws its cells from the image, not from the
// sample's position: a sample decoded alone selects what it selects inside the batch, and the batch's
// images do not all select the same cells.
func TestDecoderRandomPerImage(t *testing.T) {
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_infer.safetensors"))
	cfg := gc.cfg
	cfg.Flex.Strategy, cfg.Flex.Ratio = "random", 0.5
	w, err := FromTensors(cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	selected := func(b *Batch[float64], s int) string {
		d, err := NewDecoder(w, b, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		d.Prefill()
		return fmt.Sprint(d.Selected())
	}
	seen := map[string]bool{}
	for s := 0; s < gc.batch.Len(); s++ {
		if gc.batch.HRPixels[s] == nil {
			continue
		}
		inBatch := selected(gc.batch, s)
		alone := selected(sampleBatch(gc.batch, s, trimmed(gc.batch.InputIDs[s], gc.batch.AttentionMask[s])), 0)
		if inBatch != alone {
			t.Errorf("sample %d: selected %s in the batch, %s alone", s, inBatch, alone)
		}
		seen[inBatch] = true
	}
	if len(seen) < 2 {
		t.Errorf("every image selected the same cells %v", seen)
	}
}

// TestArgmaxSkips: the largest logit not suppressed wins, the first of equal ones.
func TestArgmaxSkips(t *testing.T) {
	for _, tt := range []struct {
		x    []float64
		skip []int
		want int
	}{
		{[]float64{1, 3, 2}, nil, 1},
		{[]float64{1, 3, 2}, []int{1}, 2},
		{[]float64{-5, -1, 0, 0}, []int{2}, 3},
		{[]float64{-5, -1, 0}, []int{2}, 1},
		{[]float64{2, 2}, nil, 0},
		{[]float64{4, 1}, []int{0, 1}, 0},
	} {
		d := &Decoder{}
		d.Suppress(tt.skip)
		if got := argmax(tt.x, d.suppress); got != tt.want {
			t.Errorf("argmax(%v) skipping %v = %d; want %d", tt.x, tt.skip, got, tt.want)
		}
	}
}

// TestGreedySuppresses: a suppressed token is never generated, though it has the largest logit.
func TestGreedySuppresses(t *testing.T) {
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_infer.safetensors"))
	w, err := FromTensors(gc.cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	free, err := Generate(w, gc.batch, 3, -1, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := free[0][0]
	got, err := Generate(w, gc.batch, 3, -1, 1, []int{first})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got[0], first) {
		t.Errorf("generated %v with %d suppressed", got[0], first)
	}
}

// TestOracleSelectsTheBox checks the oracle strategy end to end: with a box per image sample, every HR row
// of the graph and the decoder's answer row select exactly the cells the box covers (ops.BoxCells), in
// every FlexAttention layer, whatever the attention says.
func TestOracleSelectsTheBox(t *testing.T) {
	gc := loadGolden(t, filepath.Join("..", "testdata", "golden", "tiny_infer.safetensors"))
	cfg := gc.cfg
	cfg.Flex.Strategy = "oracle"
	w, err := FromTensors(cfg, tensor.Float64, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	b := *gc.batch
	b.Boxes = make([][]int, b.Len())
	for s, ori := range b.OriSizes {
		b.Boxes[s] = []int{ori[0] / 3, 0, ori[0] / 2, ori[1] / 4} // a box off the centre, touching the top
	}
	m, _ := runLoss(t, w, &b, Options{Mode: Infer, Alpha: 1})
	_, _, zg, _ := cfg.Grid()
	grid := ops.CellGrid{G: cfg.Flex.SelectGrid, Zg: zg}
	images := 0
	for s := range b.Len() {
		if b.HRPixels[s] == nil {
			continue
		}
		images++
		want := ops.BoxCells(b.Boxes[s], b.OriSizes[s], grid.G)
		tokens := grid.Tokens(func(i int) bool { return want[i] })
		for l := cfg.Flex.NSA; l < cfg.Text.NumLayers; l++ {
			sel, err := m.Selection(l)
			if err != nil {
				t.Fatal(err)
			}
			for i, got := range sel[s] {
				if !slices.Equal(got, tokens) {
					t.Errorf("graph: sample %d layer %d HR row %d selected %v; want the box's %v", s, l, i, got, tokens)
				}
			}
		}
		d, err := NewDecoder(w, &b, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		d.Prefill()
		for l, got := range d.Selected() {
			if !slices.Equal(got, want) {
				t.Errorf("decoder: sample %d FlexAttention layer %d selected %v; want %v", s, l, got, want)
			}
		}
		if maps := d.AttentionMaps(); len(maps) != len(d.Selected()) {
			t.Errorf("decoder: sample %d: %d attention maps for %d FlexAttention layers", s, len(maps), len(d.Selected()))
		}
	}
	if images == 0 {
		t.Fatal("the golden batch has no image sample")
	}
}
