package inference

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/internal/llava"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/model"
)

// readSynth reads a generated split.
func readSynth(t *testing.T, path string) []synth.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []synth.Record
	if err := json.Unmarshal(b, &recs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

// turnsOf converts a generated record's conversation.
func turnsOf(r synth.Record) []data.Turn {
	var out []data.Turn
	for _, t := range r.Conversations {
		out = append(out, data.Turn{From: t.From, Value: t.Value})
	}
	return out
}

// userQuestion is a record's question as a user types it, without the image placeholder.
func userQuestion(r synth.Record) string {
	return strings.TrimPrefix(r.Conversations[0].Value, data.ImagePlaceholder+"\n")
}

// testPromptIsTrainingPrefix: the prediction prompt is the start of the training ids of the same record,
// and what follows it there is the answer and the end of sequence.
func testPromptIsTrainingPrefix(t *testing.T, tr *Trained, valPath string) {
	for _, r := range readSynth(t, valPath) {
		ids, _, _, err := data.Preprocess(tr.Tokenizer, turnsOf(r), r.Image != "")
		if err != nil {
			t.Fatal(err)
		}
		prompt, err := PromptIDs(tr.Tokenizer, userQuestion(r), r.Image != "")
		if err != nil {
			t.Fatalf("%s: PromptIDs: %v", r.ID, err)
		}
		if len(prompt) >= len(ids) || !slices.Equal(ids[:len(prompt)], prompt) {
			t.Errorf("%s: prompt %v is not a prefix of the training ids %v", r.ID, prompt, ids)
			continue
		}
		rest := ids[len(prompt):]
		if got := strings.TrimSpace(tr.Tokenizer.Decode(rest[:len(rest)-1])); got != r.Answer() || rest[len(rest)-1] != tr.Tokenizer.EOS() {
			t.Errorf("%s: after the prompt come %q and id %d; want the answer %q and eos", r.ID, got, rest[len(rest)-1], r.Answer())
		}
	}
	if _, err := PromptIDs(tr.Tokenizer, "  ", false); err == nil {
		t.Error("PromptIDs of an empty question: err = nil; want an error")
	}
}

// testPredictMatchesGenerate: Predict from an image file and a question answers as greedy decoding does
// on the loader's own sample cut before its answer.
func testPredictMatchesGenerate(t *testing.T, tr *Trained, m synth.Manifest) {
	recs := readSynth(t, m.Val)
	l, err := data.Open(config.EvalDataOptions(tr.Config, tr.Tokenizer, m.Val, m.ImageFolder))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const maxNew = 6
	seen := 0
	for {
		b, err := l.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for s := range b.IDs {
			r := recs[slices.IndexFunc(recs, func(r synth.Record) bool { return r.ID == b.IDs[s] })]
			want := generateFromSample(t, tr, b, s, len(tr.Tokenizer.Encode(r.Answer(), false))+1, maxNew)
			q := Query{Question: userQuestion(r)}
			if r.Image != "" {
				if q.Image, err = data.LoadImage(filepath.Join(m.ImageFolder, r.Image)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := tr.Predict([]Query{q}, maxNew)
			if err != nil {
				t.Fatalf("%s: Predict: %v", r.ID, err)
			}
			if got[0] != want {
				t.Errorf("%s: Predict = %q; want %q (greedy decoding of the loader's sample)", r.ID, got[0], want)
			}
			seen++
		}
	}
	if seen != len(recs) {
		t.Errorf("compared %d samples; want %d", seen, len(recs))
	}
	if _, err := tr.Predict([]Query{{Question: "a"}}, 0); err == nil {
		t.Error("Predict with max new tokens 0: err = nil; want an error")
	}
}

// generateFromSample decodes sample s of a loader batch, without its last tail tokens (the answer and
// eos), and returns the text up to eos.
func generateFromSample(t *testing.T, tr *Trained, b *data.Batch, s, tail, maxNew int) string {
	t.Helper()
	n := 0
	for _, m := range b.AttentionMask[s] {
		n += m
	}
	ids := b.InputIDs[s][:n-tail]
	mask, labels := slices.Repeat([]int{1}, len(ids)), slices.Repeat([]int{llava.IgnoreIndex}, len(ids))
	mb := &model.Batch[float32]{InputIDs: [][]int{ids}, AttentionMask: [][]int{mask}, Labels: [][]int{labels},
		LRPixels: [][]float32{b.LRPixels[s]}, HRPixels: [][]float32{b.HRPixels[s]}, OriSizes: b.OriSizes[s : s+1]}
	out, err := model.Generate(tr.Weights, mb, maxNew, tr.Tokenizer.EOS(), 1, tr.Suppressed())
	if err != nil {
		t.Fatal(err)
	}
	gen := out[0]
	if i := slices.Index(gen, tr.Tokenizer.EOS()); i >= 0 {
		gen = gen[:i]
	}
	return strings.TrimSpace(tr.Tokenizer.Decode(gen))
}
