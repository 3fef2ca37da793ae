package tokenizer

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeDir writes a model folder of the given files.
func writeDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// llamaJSONWith is the LLaMA fixture's tokenizer.json with more added tokens, as llava-hf's has <image> and
// <pad>.
func llamaJSONWith(t *testing.T, extra ...AddedToken) []byte {
	t.Helper()
	_, raw := loadLlama(t)
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var added []AddedToken
	if err := json.Unmarshal(f["added_tokens"], &added); err != nil {
		t.Fatal(err)
	}
	f["added_tokens"] = mustJSON(t, append(added, extra...))
	return mustJSON(t, f)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The side files of the published LLaVA-1.5 folders, cut to what LoadDir reads and a few fields it skips.
const (
	// liuhaotian/llava-v1.5-7b: special tokens as AddedToken objects, no pad token; the map pads with <unk>.
	llavaConfig = `{"add_bos_token": true, "add_eos_token": false, "clean_up_tokenization_spaces": false,
	  "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
	  "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
	  "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
	  "pad_token": null, "legacy": false, "model_max_length": 2048, "padding_side": "right", "sp_model_kwargs": {},
	  "tokenizer_class": "LlamaTokenizer"}`
	llavaSpecialMap = `{"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"}`

	// llava-hf/llava-1.5-7b-hf: <image> and <pad> added after the 32000 pieces.
	llavaHFAdded  = `{"<image>": 32000, "<pad>": 32001}`
	llavaHFConfig = `{"add_bos_token": true, "add_eos_token": false, "added_tokens_decoder": {
	    "0": {"content": "<unk>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
	    "1": {"content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
	    "2": {"content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
	    "32000": {"content": "<image>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
	    "32001": {"content": "<pad>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}},
	  "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "legacy": false,
	  "processor_class": "LlavaProcessor", "tokenizer_class": "LlamaTokenizer"}`
	llavaHFSpecialMap = `{"bos_token": {"content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
	  "eos_token": {"content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
	  "pad_token": {"content": "<pad>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
	  "unk_token": {"content": "<unk>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false}}`
)

// TestLoadDirLLaVA loads the two published folder layouts (with the LLaMA fixture's vocabulary standing in
// for the real one) and a mix of them: the text encodes as the tokenizer.json fixture does, <image> and
// <pad> are single ids where the folder adds them, and the special ids follow the configuration.
func TestLoadDirLLaVA(t *testing.T) {
	model := llamaAsSentencePiece(t)
	hfJSON := llamaJSONWith(t, AddedToken{ID: 32000, Content: "<image>", Special: true}, AddedToken{ID: 32001, Content: "<pad>", Special: true})
	_, plainJSON := loadLlama(t)
	tests := []struct {
		name  string
		files map[string]string
		added bool // <image> and <pad> are tokens
	}{
		{"llava-v1.5-7b", map[string]string{tokenizerModelFile: string(model), configFile: llavaConfig, specialMapFile: llavaSpecialMap}, false},
		{"llava-1.5-7b-hf", map[string]string{tokenizerJSONFile: string(hfJSON), tokenizerModelFile: string(model),
			addedTokensFile: llavaHFAdded, configFile: llavaHFConfig, specialMapFile: llavaHFSpecialMap}, true},
		{"tokenizer.json without the added tokens", map[string]string{tokenizerJSONFile: string(plainJSON),
			addedTokensFile: llavaHFAdded, configFile: llavaHFConfig}, true},
		{"tokenizer.model with llava-hf's added tokens", map[string]string{tokenizerModelFile: string(model),
			addedTokensFile: llavaHFAdded, configFile: llavaHFConfig, specialMapFile: llavaHFSpecialMap}, true},
		{"tokenizer.model alone", map[string]string{tokenizerModelFile: string(model)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string][]byte{}
			for name, s := range tt.files {
				files[name] = []byte(s)
			}
			tok, err := LoadDir(writeDir(t, files))
			if err != nil {
				t.Fatal(err)
			}
			checkLLaVADir(t, tok, tt.added)
		})
	}
}

// checkLLaVADir checks a LLaVA folder's tokenizer: golden encodings, special ids, and <image>/<pad> when added.
func checkLLaVADir(t *testing.T, tok *Tokenizer, added bool) {
	t.Helper()
	for _, c := range loadExpected(t).Encodings {
		if strings.Contains(c.Text, "<image>") && added {
			continue
		}
		if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDs) {
			t.Errorf("Encode(%q) = %v; want %v", c.Text, got, c.IDs)
		}
	}
	size, pad := 32000, 0
	if added {
		size, pad = 32002, 32001
	}
	got := []int{tok.VocabSize(), tok.BOS(), tok.EOS(), tok.UNK(), tok.PAD()}
	if want := []int{size, 1, 2, 0, pad}; !slices.Equal(got, want) {
		t.Errorf("VocabSize, BOS, EOS, UNK, PAD = %v; want %v", got, want)
	}
	if !added {
		return
	}
	what := tok.Encode("What", false)
	want := slices.Concat([]int{1, 32000}, tok.Encode("\nWhat", false), []int{32001}, what)
	if got := tok.Encode("<image>\nWhat<pad>What", true); !slices.Equal(got, want) {
		t.Errorf("Encode(<image>…<pad>…) = %v; want %v", got, want)
	}
	if got := tok.Decode([]int{32000, 32001}); got != "<image><pad>" {
		t.Errorf("Decode(32000, 32001) = %q; want %q", got, "<image><pad>")
	}
}

func TestLoadDirErrors(t *testing.T) {
	model := string(llamaAsSentencePiece(t))
	tests := []struct {
		name  string
		files map[string]string
		want  error
		names []string // what the message must name
	}{
		{"empty folder", nil, fs.ErrNotExist, []string{tokenizerJSONFile, tokenizerModelFile}},
		{"broken tokenizer.json is not skipped", map[string]string{tokenizerJSONFile: "{", tokenizerModelFile: model},
			ErrFormat, []string{tokenizerJSONFile}},
		{"added id of a byte token", map[string]string{tokenizerModelFile: model, addedTokensFile: `{"<image>": 5}`},
			ErrFormat, []string{addedTokensFile, "<image>", "<0x02>"}},
		{"added token with another id", map[string]string{tokenizerModelFile: model, addedTokensFile: `{"<s>": 32000}`},
			ErrFormat, []string{addedTokensFile, "<s>"}},
		{"files disagree", map[string]string{tokenizerModelFile: model, addedTokensFile: `{"<img>": 32000}`,
			configFile: `{"added_tokens_decoder": {"32000": {"content": "<image>"}}}`}, ErrFormat, []string{configFile, "<image>", "<img>"}},
		{"added id far past the vocabulary", map[string]string{tokenizerModelFile: model, addedTokensFile: `{"<image>": 16000000}`},
			ErrFormat, []string{addedTokensFile, "<image>"}},
		{"added_tokens_decoder key", map[string]string{tokenizerModelFile: model, configFile: `{"added_tokens_decoder": {"x": {"content": "<x>"}}}`},
			ErrFormat, []string{configFile, `"x"`}},
		{"unknown special token", map[string]string{tokenizerModelFile: model, specialMapFile: `{"pad_token": "<nope>"}`},
			ErrFormat, []string{specialMapFile, "pad_token", "<nope>"}},
		{"special token of a bad type", map[string]string{tokenizerModelFile: model, configFile: `{"bos_token": 7}`},
			ErrFormat, []string{configFile, "bos_token"}},
		{"malformed added_tokens.json", map[string]string{tokenizerModelFile: model, addedTokensFile: `["<image>"]`},
			ErrFormat, []string{addedTokensFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string][]byte{}
			for name, s := range tt.files {
				files[name] = []byte(s)
			}
			_, err := LoadDir(writeDir(t, files))
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadDir error = %v; want %v", err, tt.want)
			}
			for _, s := range tt.names {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("LoadDir error %q does not name %q", err, s)
				}
			}
		})
	}
}
