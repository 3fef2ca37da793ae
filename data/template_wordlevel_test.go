package data_test

import (
	"testing"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/internal/llava"
)

// TestPreprocessWordLevel checks the label masking with a tokenizer that makes no token of a space (the
// synthetic dataset's WordLevel one): exactly the answer and its </s> are supervised, as with LLaMA.
func TestPreprocessWordLevel(t *testing.T) {
	o := synth.DefaultOptions()
	o.Dir, o.N, o.ValN, o.TestN = t.TempDir(), 8, 1, 1
	m, err := synth.Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(m.Tokenizer)
	if err != nil {
		t.Fatal(err)
	}
	turns := []data.Turn{{From: "human", Value: "<image>\nWhat color is the circle?"}, {From: "gpt", Value: "red"},
		{From: "human", Value: "What shape is the blue object?"}, {From: "gpt", Value: "square"}}
	ids, labels, mismatch, err := data.Preprocess(tok, turns, true)
	if err != nil || mismatch {
		t.Fatalf("Preprocess: mismatch %v, err %v", mismatch, err)
	}
	var got []int
	for i, l := range labels {
		if l != llava.IgnoreIndex {
			if l != ids[i] {
				t.Fatalf("label %d is %d but the id is %d", i, l, ids[i])
			}
			got = append(got, l)
		}
	}
	want := append(tok.Encode("red", false), tok.EOS())
	want = append(append(want, tok.Encode("square", false)...), tok.EOS())
	if len(got) != len(want) {
		t.Fatalf("supervised %q; want %q", tok.Decode(got), tok.Decode(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("supervised %q; want %q", tok.Decode(got), tok.Decode(want))
		}
	}
}
