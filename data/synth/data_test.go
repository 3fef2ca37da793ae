package synth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/internal/llava"
)

// These tests read a generated dataset with the data package, as training will.

// TestWithDataPackage generates one dataset and runs every check on it.
func TestWithDataPackage(t *testing.T) {
	o := synth.DefaultOptions()
	o.Dir, o.N, o.ValN, o.TestN, o.Seed = t.TempDir(), 80, 10, 40, 11
	m, err := synth.Generate(o)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	tok, err := tokenizer.Load(m.Tokenizer)
	if err != nil {
		t.Fatalf("load the generated tokenizer: %v", err)
	}
	recs := readAll(t, m)
	t.Run("tokenizer covers every text", func(t *testing.T) { checkVocabulary(t, tok, recs) })
	t.Run("preprocess supervises the answer", func(t *testing.T) { checkPreprocess(t, tok, recs) })
	t.Run("loader reads every sample", func(t *testing.T) { checkLoader(t, m, tok) })
}

func readAll(t *testing.T, m synth.Manifest) []synth.Record {
	t.Helper()
	var all []synth.Record
	for _, p := range []string{m.Train, m.Val, m.Test} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var recs []synth.Record
		if err := json.Unmarshal(b, &recs); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		all = append(all, recs...)
	}
	return all
}

func checkVocabulary(t *testing.T, tok *tokenizer.Tokenizer, recs []synth.Record) {
	if got := tok.VocabSize(); got >= 200 {
		t.Errorf("vocabulary size %d; want < 200", got)
	}
	if got := []int{tok.UNK(), tok.BOS(), tok.EOS()}; !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("UNK, BOS, EOS = %v; want [0 1 2] as in LLaMA", got)
	}
	texts := []string{data.SystemPrompt, "USER: ASSISTANT:"}
	for _, r := range recs {
		texts = append(texts, strings.ReplaceAll(r.Conversations[0].Value, data.ImagePlaceholder, ""), r.Answer())
	}
	for _, s := range texts {
		if ids := tok.Encode(s, false); slices.Contains(ids, tok.UNK()) {
			t.Errorf("%q encodes to %v, with the unknown token %d", s, ids, tok.UNK())
		}
	}
	for _, r := range recs {
		ids := tok.Encode(r.Answer(), false)
		if len(ids) != 1 || tok.Decode(ids) != r.Answer() {
			t.Errorf("%s: answer %q encodes to %v; want one token that decodes back", r.ID, r.Answer(), ids)
		}
	}
}

func checkPreprocess(t *testing.T, tok *tokenizer.Tokenizer, recs []synth.Record) {
	for _, r := range recs {
		turns := []data.Turn{{From: "human", Value: r.Conversations[0].Value}, {From: "gpt", Value: r.Answer()}}
		ids, labels, mismatch, err := data.Preprocess(tok, turns, r.Image != "")
		if err != nil || mismatch {
			t.Errorf("%s: Preprocess: mismatch %v, err %v; want neither", r.ID, mismatch, err)
			continue
		}
		answer := tok.Encode(r.Answer(), false)[0]
		n := len(ids)
		if ids[n-2] != answer || labels[n-2] != answer || labels[n-1] != tok.EOS() {
			t.Errorf("%s: ids end %v, labels end %v; want the answer %d then </s> supervised", r.ID, ids[n-2:], labels[n-2:], answer)
		}
		if got, want := countOf(ids, llava.ImageTokenID), min(1, len(r.Image)); got != want {
			t.Errorf("%s: %d image tokens; want %d", r.ID, got, want)
		}
	}
}

func countOf(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

func checkLoader(t *testing.T, m synth.Manifest, tok *tokenizer.Tokenizer) {
	l, err := data.Open(data.Options{
		DataPath: m.Test, ImageFolder: m.ImageFolder, Tokenizer: tok,
		ImageSize: 64, Zoom: 3, PatchSize: 8, BatchSize: 8,
		Split: data.SplitAll, Once: true, Policy: data.PolicyFail,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for {
		_, err := l.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
	}
	c := l.Counts()
	got := []int{c.Samples, c.WithImage, c.TextOnly, c.Skipped, len(c.Bad)}
	want := []int{m.Counts["test"], m.Counts["test"] - m.Counts["test.text"], m.Counts["test.text"], 0, 0}
	if !slices.Equal(got, want) {
		t.Errorf("samples, with image, text-only, skipped, bad reasons = %v (bad: %v); want %v", got, c.Bad, want)
	}
}
