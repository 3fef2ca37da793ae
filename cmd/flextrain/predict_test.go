package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/inference"
	"github.com/flextrain/flextrain/internal/llava"

	"github.com/flextrain/flextrain/config"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/synth"
	"github.com/flextrain/flextrain/model"
)

// testPredict: for every validation record, `predict` with its image file and question prints what greedy
// decoding gives on the loader's own sample cut before the answer.
func testPredict(t *testing.T, r run) {
	tr, err := inference.Load(r.ckpt, inference.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]synth.Record{}
	for _, rec := range readRecords(t, r.data.Val) {
		recs[rec.ID] = rec
	}
	const maxNew = 5
	for id, want := range loaderAnswers(t, tr, r.data, recs, maxNew) {
		rec := recs[id]
		args := []string{"--checkpoint", r.ckpt, "--question", strings.TrimPrefix(rec.Conversations[0].Value, "<image>\n"), "--max-new-tokens", "5"}
		if rec.Image != "" {
			args = append(args, "--image", filepath.Join(r.data.ImageFolder, rec.Image))
		}
		var out bytes.Buffer
		if err := predictMain(args, &out); err != nil {
			t.Fatalf("%s: predict: %v", id, err)
		}
		if got := out.String(); got != want+"\n" {
			t.Errorf("%s: predict printed %q; want %q", id, got, want+"\n")
		}
	}
}

// loaderAnswers decodes every sample of the split greedily from the loader's ids cut before the answer.
func loaderAnswers(t *testing.T, tr *inference.Trained, m synth.Manifest, recs map[string]synth.Record, maxNew int) map[string]string {
	t.Helper()
	l, err := data.Open(config.EvalDataOptions(tr.Config, tr.Tokenizer, m.Val, m.ImageFolder))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := map[string]string{}
	for {
		b, err := l.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for s, id := range b.IDs {
			tail := len(tr.Tokenizer.Encode(recs[id].Answer(), false)) + 1 // the answer and eos
			out[id] = greedy(t, tr, b, s, tail, maxNew)
		}
	}
}

// greedy decodes sample s of b without its last tail real tokens, up to eos.
func greedy(t *testing.T, tr *inference.Trained, b *data.Batch, s, tail, maxNew int) string {
	t.Helper()
	n := 0
	for _, m := range b.AttentionMask[s] {
		n += m
	}
	ids := b.InputIDs[s][:n-tail]
	mb := &model.Batch[float32]{InputIDs: [][]int{ids}, AttentionMask: [][]int{slices.Repeat([]int{1}, len(ids))},
		Labels: [][]int{slices.Repeat([]int{llava.IgnoreIndex}, len(ids))}, LRPixels: [][]float32{b.LRPixels[s]},
		HRPixels: [][]float32{b.HRPixels[s]}, OriSizes: b.OriSizes[s : s+1]}
	gen, err := model.Generate(tr.Weights, mb, maxNew, tr.Tokenizer.EOS(), 1, tr.Suppressed())
	if err != nil {
		t.Fatal(err)
	}
	g := gen[0]
	if i := slices.Index(g, tr.Tokenizer.EOS()); i >= 0 {
		g = g[:i]
	}
	return strings.TrimSpace(tr.Tokenizer.Decode(g))
}

// readRecords reads a generated split.
func readRecords(t *testing.T, path string) []synth.Record {
	t.Helper()
	var recs []synth.Record
	if err := json.Unmarshal(readFile(t, path), &recs); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return recs
}

func TestPredictErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.png")
	tests := []struct {
		name string
		args []string
		want error  // nil: any error
		text string // in the message
	}{
		{"missing image", []string{"--checkpoint", t.TempDir(), "--question", "q", "--image", missing}, data.ErrImageMissing, missing},
		{"no checkpoint", []string{"--checkpoint", filepath.Join(t.TempDir(), "run"), "--question", "q"}, nil, "run"},
		{"no question", []string{"--checkpoint", t.TempDir()}, nil, "question"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := predictMain(tt.args, &out)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: err = %v; want an error mentioning %q", tt.name, err, tt.text)
		}
	}
}
