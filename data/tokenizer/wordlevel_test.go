package tokenizer

import (
	"path/filepath"
	"slices"
	"testing"
)

func loadWordLevel(t *testing.T) *Tokenizer {
	t.Helper()
	tok, err := Load(filepath.Join("..", "testdata", "tokenizer", "wordlevel", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestWordLevelEncode(t *testing.T) {
	tok := loadWordLevel(t)
	cases := []struct {
		text   string
		addBOS bool
		want   []int
	}{
		{"What is this?", true, []int{1, 7, 8, 9, 10}},
		{"what is this?", false, []int{7, 8, 9, 10}},
		{"  A   red\tsquare.\n", false, []int{11, 12, 13, 14}},
		{"a green square", false, []int{11, 0, 13}}, // "green" is not in the vocabulary
		{"USER: what?</s>ASSISTANT: blue.</s>", false, []int{4, 5, 7, 10, 2, 6, 5, 15, 14, 2}},
		{"<s><pad><unk>", false, []int{1, 3, 0}},
		{"", true, []int{1}},
		{"   ", false, []int{}},
		{"red!?", false, []int{12, 0}}, // "!?" is one run of punctuation
	}
	for _, c := range cases {
		if got := tok.Encode(c.text, c.addBOS); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q, %v) = %v; want %v", c.text, c.addBOS, got, c.want)
		}
	}
}

func TestWordLevelSpecialIDsAndDecode(t *testing.T) {
	tok := loadWordLevel(t)
	got := []int{tok.VocabSize(), tok.BOS(), tok.EOS(), tok.UNK(), tok.PAD()}
	if want := []int{20, 1, 2, 0, 3}; !slices.Equal(got, want) {
		t.Errorf("VocabSize, BOS, EOS, UNK, PAD = %v; want %v", got, want)
	}
	// Without a decoder Hugging Face joins tokens with spaces.
	if got, want := tok.Decode([]int{1, 7, 8, 9, 10, 2}), "<s> what is this ? </s>"; got != want {
		t.Errorf("Decode = %q; want %q", got, want)
	}
}
