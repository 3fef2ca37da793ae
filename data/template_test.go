package data

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/internal/llava"
)

// templateGolden is the part of expected.json (scripts/make-tokenizer-fixture.sh) written for this file: vicuna_v1
// samples whose ids and labels llama-tokenizer-js computed segment by segment, without LLaVA's round arithmetic.
type templateGolden struct {
	System  string `json:"system"`
	Samples []struct {
		Name          string `json:"name"`
		HasImage      bool   `json:"has_image"`
		Conversations []Turn `json:"conversations"`
		Prompt        string `json:"prompt"`
		IDs           []int  `json:"ids"`
		Labels        []int  `json:"labels"`
	} `json:"samples"`
}

var (
	llamaOnce sync.Once
	llamaTok  *tokenizer.Tokenizer
	golden    templateGolden
	llamaErr  error
)

func loadLlama(t *testing.T) (*tokenizer.Tokenizer, templateGolden) {
	t.Helper()
	llamaOnce.Do(func() {
		dir := filepath.Join("testdata", "tokenizer", "llama")
		if llamaTok, llamaErr = tokenizer.Load(filepath.Join(dir, "tokenizer.json.gz")); llamaErr != nil {
			return
		}
		var b []byte
		if b, llamaErr = os.ReadFile(filepath.Join(dir, "expected.json")); llamaErr == nil {
			llamaErr = json.Unmarshal(b, &golden)
		}
	})
	if llamaErr != nil {
		t.Fatalf("load LLaMA fixture: %v", llamaErr)
	}
	return llamaTok, golden
}

func TestPreprocessGolden(t *testing.T) {
	tok, g := loadLlama(t)
	if g.System != SystemPrompt {
		t.Fatalf("SystemPrompt = %q; the fixture's is %q", SystemPrompt, g.System)
	}
	if len(g.Samples) < 5 {
		t.Fatalf("expected.json has %d samples; want at least 5", len(g.Samples))
	}
	for _, s := range g.Samples {
		t.Run(s.Name, func(t *testing.T) {
			if got := vicunaPromptOf(t, s.Conversations, s.HasImage); got != s.Prompt {
				t.Errorf("prompt = %q; want %q", got, s.Prompt)
			}
			ids, labels, mismatch, err := Preprocess(tok, s.Conversations, s.HasImage)
			if err != nil || mismatch {
				t.Fatalf("Preprocess: mismatch %v, err %v; want false, nil", mismatch, err)
			}
			if !slices.Equal(ids, s.IDs) {
				t.Errorf("ids =\n%v; want\n%v", ids, s.IDs)
			}
			for i := range max(len(labels), len(s.Labels)) {
				if i >= len(labels) || i >= len(s.Labels) || labels[i] != s.Labels[i] {
					t.Fatalf("labels differ first at %d:\n got %v\nwant %v", i, labels, s.Labels)
				}
			}
		})
	}
}

func vicunaPromptOf(t *testing.T, turns []Turn, hasImage bool) string {
	t.Helper()
	norm, err := normalizeTurns(turns, hasImage)
	if err != nil {
		t.Fatal(err)
	}
	return vicunaPrompt(norm)
}

// TestPreprocessSupervisesAnswers checks the meaning of the labels: the supervised ids form one run per
// answer, which decodes to that answer followed by "</s>".
func TestPreprocessSupervisesAnswers(t *testing.T) {
	tok, g := loadLlama(t)
	for _, s := range g.Samples {
		var answers []string
		for i, turn := range s.Conversations {
			if turn.From == "gpt" && i > 0 {
				answers = append(answers, turn.Value)
			}
		}
		ids, labels, _, err := Preprocess(tok, s.Conversations, s.HasImage)
		if err != nil {
			t.Fatal(err)
		}
		runs := supervisedRuns(ids, labels)
		if len(runs) != len(answers) {
			t.Fatalf("%s: %d supervised runs; want %d (one per answer)", s.Name, len(runs), len(answers))
		}
		for i, run := range runs {
			if got, want := tok.Decode(run), answers[i]+"</s>"; got != want {
				t.Errorf("%s: run %d decodes to %q; want %q", s.Name, i, got, want)
			}
		}
	}
}

// supervisedRuns returns the maximal runs of positions whose label is not llava.IgnoreIndex, checking each label
// equals its id.
func supervisedRuns(ids, labels []int) [][]int {
	var runs [][]int
	inRun := false
	for i, l := range labels {
		if l == llava.IgnoreIndex {
			inRun = false
			continue
		}
		if l != ids[i] {
			return [][]int{{-1}}
		}
		if !inRun {
			runs = append(runs, nil)
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], l)
		inRun = true
	}
	return runs
}

// TestPreprocessImagePlacement checks that wherever "<image>" sits in the first question (or if it is absent)
// the sample encodes as the golden one with "<image>\n" in front.
func TestPreprocessImagePlacement(t *testing.T) {
	tok, g := loadLlama(t)
	ref := g.Samples[0]
	if ref.Name != "image_two_rounds" || !strings.HasPrefix(ref.Conversations[0].Value, "<image>\n") {
		t.Fatalf("first golden sample is %q; want image_two_rounds with <image> in front", ref.Name)
	}
	question := strings.TrimPrefix(ref.Conversations[0].Value, "<image>\n")
	for _, first := range []string{question + "\n<image>", "<image>" + question, "  <image>\n\n" + question + " \n", question} {
		turns := slices.Clone(ref.Conversations)
		turns[0].Value = first
		ids, labels, mismatch, err := Preprocess(tok, turns, true)
		if err != nil || mismatch || !slices.Equal(ids, ref.IDs) || !slices.Equal(labels, ref.Labels) {
			t.Errorf("first question %q: mismatch %v, err %v, ids equal %v, labels equal %v; want the golden sample",
				first, mismatch, err, slices.Equal(ids, ref.IDs), slices.Equal(labels, ref.Labels))
		}
		if turns[0].Value != first {
			t.Errorf("Preprocess changed the caller's turn to %q", turns[0].Value)
		}
	}
}

func TestPreprocessErrors(t *testing.T) {
	tok, _ := loadLlama(t)
	h := func(v string) Turn { return Turn{From: "human", Value: v} }
	gp := func(v string) Turn { return Turn{From: "gpt", Value: v} }
	cases := []struct {
		name     string
		turns    []Turn
		hasImage bool
		want     error
	}{
		{"no turns", nil, false, ErrConversation},
		{"only a gpt turn", []Turn{gp("hello")}, false, ErrConversation},
		{"unknown speaker", []Turn{{From: "system", Value: "be nice"}, h("q"), gp("a")}, false, ErrConversation},
		{"capitalized speaker", []Turn{{From: "Human", Value: "q"}, gp("a")}, false, ErrConversation},
		{"two human turns", []Turn{h("q1"), h("q2"), gp("a")}, false, ErrConversation},
		{"two gpt turns after the dropped one", []Turn{gp("hi"), gp("again"), h("q")}, false, ErrConversation},
		{"human, gpt, gpt", []Turn{h("q"), gp("a"), gp("b")}, false, ErrConversation},
		{"image placeholder without image", []Turn{h("<image>\nq"), gp("a")}, false, ErrImagePlaceholder},
		{"image placeholder in an answer", []Turn{h("<image>\nq"), gp("see <image>")}, true, ErrImagePlaceholder},
		{"image placeholder in a later question", []Turn{h("q"), gp("a"), h("<image>\nq2"), gp("b")}, true, ErrImagePlaceholder},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, labels, _, err := Preprocess(tok, c.turns, c.hasImage)
			if !errors.Is(err, c.want) || ids != nil || labels != nil {
				t.Errorf("Preprocess = %d ids, %d labels, %v; want no ids, %v", len(ids), len(labels), err, c.want)
			}
		})
	}
	if _, _, _, err := Preprocess(nil, []Turn{h("q"), gp("a")}, false); err == nil {
		t.Errorf("Preprocess(nil tokenizer) succeeded; want an error")
	}
}

// TestPreprocessMismatch builds conversations on which LLaVA's round arithmetic does not reach the token count.
func TestPreprocessMismatch(t *testing.T) {
	tok, _ := loadLlama(t)
	h := func(v string) Turn { return Turn{From: "human", Value: v} }
	gp := func(v string) Turn { return Turn{From: "gpt", Value: v} }
	cases := []struct {
		name     string
		turns    []Turn
		hasImage bool
	}{
		{"end of sequence inside a question", []Turn{h("hi</s>there"), gp("hello")}, false},
		{"role marker inside an answer", []Turn{h("q"), gp("x ASSISTANT: y")}, true},
		{"conversation ends with a question", []Turn{h("q1"), gp("a1"), h("q2")}, false},
		{"empty answer", []Turn{h("q"), gp("")}, false},
		{"literal unk token counts as padding", []Turn{h("what is <unk>?"), gp("a")}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ids, labels, mismatch, err := Preprocess(tok, c.turns, c.hasImage)
			if err != nil || !mismatch {
				t.Fatalf("Preprocess: mismatch %v, err %v; want true, nil", mismatch, err)
			}
			if len(ids) < 30 || ids[0] != tok.BOS() || len(labels) != len(ids) {
				t.Errorf("got %d ids starting %v and %d labels; want the whole prompt's ids and as many labels", len(ids), ids[:1], len(labels))
			}
			for i, l := range labels {
				if l != llava.IgnoreIndex {
					t.Fatalf("labels[%d] = %d; want all %d", i, l, llava.IgnoreIndex)
				}
			}
		})
	}
}

func BenchmarkPreprocess(b *testing.B) {
	tok, err := tokenizer.Load(filepath.Join("testdata", "tokenizer", "llama", "tokenizer.json.gz"))
	if err != nil {
		b.Fatal(err)
	}
	turns := []Turn{
		{From: "human", Value: "<image>\nWhat are the colors of the bus in the image?"},
		{From: "gpt", Value: "The bus in the image is white and red."},
		{From: "human", Value: "What feature can be seen on the back of the bus?"},
		{From: "gpt", Value: "The back of the bus features an advertisement."},
	}
	for b.Loop() {
		if _, _, _, err := Preprocess(tok, turns, true); err != nil {
			b.Fatal(err)
		}
	}
}
