package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// tinyBPE is a hand-written BPE tokenizer.json whose merges are given as pairs (the newer form).
const tinyBPE = `{
 "added_tokens": [{"id": 7, "content": "<x>", "special": true, "lstrip": true, "rstrip": true},
                  {"id": 8, "content": "<xy>", "special": true}],
 "normalizer": null, "pre_tokenizer": %PRE%, "decoder": {"type": "Fuse"},
 "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": %FUSE%, "byte_fallback": false,
   "vocab": {"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "abc": 5, "bc": 6},
   "merges": [["a", "b"], ["ab", "c"], ["b", "c"]]}}`

func tiny(t *testing.T, pre string, fuse bool) *Tokenizer {
	t.Helper()
	js := strings.NewReplacer("%PRE%", pre, "%FUSE%", map[bool]string{true: "true", false: "false"}[fuse]).Replace(tinyBPE)
	tok, err := Parse([]byte(js))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tok
}

func TestTinyBPE(t *testing.T) {
	cases := []struct {
		name, pre, text string
		fuse            bool
		want            []int
	}{
		{"merge chain", "null", "abc", true, []int{5}},
		{"lowest rank first", "null", "bcab", true, []int{6, 4}},
		{"equal ranks leftmost first", "null", "abab", true, []int{4, 4}},
		{"fused unknowns", "null", "axxb", true, []int{1, 0, 2}},
		{"unfused unknowns", "null", "axxb", false, []int{1, 0, 0, 2}},
		{"added token strips spaces", "null", "ab  <x>  c", true, []int{4, 7, 3}},
		{"longest added token", "null", "a<xy>b", true, []int{1, 8, 2}},
		{"whitespace split", `{"type": "WhitespaceSplit"}`, "ab c", true, []int{4, 3}},
		{"sequence of pre-tokenizers", `{"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}]}`, "a bc", true, []int{1, 6}},
		{"no BOS in vocab", "null", "", true, []int{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := tiny(t, c.pre, c.fuse)
			if got := tok.Encode(c.text, true); !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v; want %v", c.text, got, c.want)
			}
		})
	}
}

func TestTinyBPEIDs(t *testing.T) {
	tok := tiny(t, "null", true)
	got := []int{tok.VocabSize(), tok.BOS(), tok.EOS(), tok.UNK(), tok.PAD()}
	if want := []int{9, -1, -1, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("VocabSize, BOS, EOS, UNK, PAD = %v; want %v", got, want)
	}
	if got, want := tok.Decode([]int{5, 7, 6}), "abc<x>bc"; got != want {
		t.Errorf("Decode = %q; want %q", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	model := `"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}`
	cases := []struct {
		name, js string
		want     error
	}{
		{"not JSON", `{"model": `, ErrFormat},
		{"trailing data", `{` + model + `} {}`, ErrFormat},
		{"empty vocab", `{"model": {"type": "BPE", "vocab": {}}}`, ErrFormat},
		{"unknown model", `{"model": {"type": "Unigram", "vocab": {"a": 0}}}`, ErrUnsupported},
		{"merge of unknown token", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a z"]}}`, ErrFormat},
		{"merge not a pair", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}`, ErrFormat},
		{"unk not in vocab", `{"model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "<unk>"}}`, ErrFormat},
		{"duplicate id", `{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 0}}}`, ErrFormat},
		{"huge id", `{"model": {"type": "WordLevel", "vocab": {"a": 99999999999}}}`, ErrFormat},
		{"negative added id", `{"added_tokens": [{"id": -1, "content": "<s>"}], ` + model + `}`, ErrFormat},
		{"added id clash", `{"added_tokens": [{"id": 0, "content": "<s>"}], ` + model + `}`, ErrFormat},
		{"dropout", `{"model": {"type": "BPE", "dropout": 0.1, "vocab": {"a": 0}}}`, ErrUnsupported},
		{"subword prefix", `{"model": {"type": "BPE", "continuing_subword_prefix": "##", "vocab": {"a": 0}}}`, ErrUnsupported},
		{"NFKC normalizer", `{"normalizer": {"type": "NFKC"}, ` + model + `}`, ErrUnsupported},
		{"regex Replace", `{"normalizer": {"type": "Replace", "pattern": {"Regex": " +"}, "content": " "}, ` + model + `}`, ErrUnsupported},
		{"ByteLevel pre-tokenizer", `{"pre_tokenizer": {"type": "ByteLevel"}, ` + model + `}`, ErrUnsupported},
		{"bad prepend scheme", `{"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"}, ` + model + `}`, ErrUnsupported},
		{"long replacement", `{"pre_tokenizer": {"type": "Metaspace", "replacement": "__"}, ` + model + `}`, ErrFormat},
		{"WordPiece decoder", `{"decoder": {"type": "WordPiece"}, ` + model + `}`, ErrUnsupported},
		{"Strip decoder content", `{"decoder": {"type": "Strip", "content": 5}, ` + model + `}`, ErrFormat},
		{"nested bad decoder", `{"decoder": {"type": "Sequence", "decoders": [{"type": "BPEDecoder"}]}, ` + model + `}`, ErrUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.js))
			if !errors.Is(err, c.want) {
				t.Errorf("Parse error = %v; want %v", err, c.want)
			}
		})
	}
}

// nestedNormalizers is a tokenizer.json whose normalizer is depth Sequences nested in one another.
func nestedNormalizers(depth int) string {
	n := strings.Repeat(`{"type": "Sequence", "normalizers": [`, depth) + `{"type": "Lowercase"}` + strings.Repeat(`]}`, depth)
	return `{"normalizer": ` + n + `, "model": {"type": "WordLevel", "vocab": {"a": 0}}}`
}

// TestParseLimits: the id table may span twice the tokens plus idSlack, and a component may lie in
// maxNesting Sequences; past either, a small file would allocate far more than its size.
func TestParseLimits(t *testing.T) {
	cases := []struct {
		name, js string
		want     error
	}{
		{"gap within the slack", `{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1027}}}`, nil},
		{"gap past the slack", `{"model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1028}}}`, ErrFormat},
		{"added id past the slack", `{"added_tokens": [{"id": 16777000, "content": "<x>"}], "model": {"type": "WordLevel", "vocab": {"a": 0}}}`, ErrFormat},
		{"Sequences 8 deep", nestedNormalizers(maxNesting), nil},
		{"Sequences 9 deep", nestedNormalizers(maxNesting + 1), ErrUnsupported},
		{"decoder Sequences 9 deep", `{"decoder": ` + strings.Repeat(`{"type": "Sequence", "decoders": [`, maxNesting+1) + `{"type": "Fuse"}` +
			strings.Repeat(`]}`, maxNesting+1) + `, "model": {"type": "WordLevel", "vocab": {"a": 0}}}`, ErrUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Parse([]byte(c.js)); !errors.Is(err, c.want) {
				t.Errorf("Parse error = %v; want %v", err, c.want)
			}
		})
	}
}
