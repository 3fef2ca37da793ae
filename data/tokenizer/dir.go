package tokenizer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/flextrain/flextrain/internal/fileio"
)

// The files of a Hugging Face model folder that LoadDir reads.
const (
	tokenizerJSONFile  = "tokenizer.json"
	tokenizerModelFile = "tokenizer.model"
	addedTokensFile    = "added_tokens.json"
	configFile         = "tokenizer_config.json"
	specialMapFile     = "special_tokens_map.json"
)

// LoadDir reads the tokenizer of a Hugging Face model folder: its tokenizer.json if it has one, else its
// SentencePiece tokenizer.model (liuhaotian/llava-v1.5-7b ships only that), and then, each file optional:
//
//   - the added tokens of added_tokens.json ({"<image>": 32000, "<pad>": 32001} in llava-hf/llava-1.5-7b-hf)
//     and of tokenizer_config.json's added_tokens_decoder (with their lstrip, rstrip and single_word flags),
//     matched literally in the text like the tokenizer's own added tokens;
//   - the bos_token, eos_token, unk_token and pad_token of tokenizer_config.json, then of
//     special_tokens_map.json, which wins as it does in transformers: each sets BOS, EOS, UNK or PAD and is
//     matched literally too; null keeps the model's.
//
// An added token whose id another token has, or whose text another id has, and a special token that is no
// token, are refused with an error naming the file and the token. Every file is held to MaxFileBytes.
func LoadDir(dir string) (*Tokenizer, error) {
	t, err := loadModelFile(dir)
	if err != nil {
		return nil, err
	}
	var cfg, special configJSON
	if err := t.readAddedTokens(dir, &cfg); err != nil {
		return nil, err
	}
	if _, err := readSideFile(dir, specialMapFile, &special); err != nil {
		return nil, err
	}
	if err := t.setSpecialTokens(filepath.Join(dir, configFile), &cfg); err != nil {
		return nil, err
	}
	if err := t.setSpecialTokens(filepath.Join(dir, specialMapFile), &special); err != nil {
		return nil, err
	}
	t.added = newAddedMatcher(t.addedTokens, t.vocab)
	return t, nil
}

// loadModelFile loads dir's tokenizer.json, else its tokenizer.model. Only a missing file moves on to the
// next: a tokenizer.json that fails to load is an error.
func loadModelFile(dir string) (*Tokenizer, error) {
	var tried []string
	for _, name := range []string{tokenizerJSONFile, tokenizerModelFile} {
		path := filepath.Join(dir, name)
		t, err := Load(path)
		if !errors.Is(err, fs.ErrNotExist) {
			return t, err
		}
		tried = append(tried, path)
	}
	return nil, fmt.Errorf("tokenizer: no tokenizer in %s: tried %s: %w", dir, strings.Join(tried, " and "), fs.ErrNotExist)
}

// configJSON is the part of tokenizer_config.json and special_tokens_map.json that LoadDir reads. A special
// token is a string, an object with its "content", or null.
type configJSON struct {
	AddedTokensDecoder map[string]AddedToken `json:"added_tokens_decoder"` // keyed by id
	BOS                json.RawMessage       `json:"bos_token"`
	EOS                json.RawMessage       `json:"eos_token"`
	UNK                json.RawMessage       `json:"unk_token"`
	PAD                json.RawMessage       `json:"pad_token"`
}

// readSideFile decodes the JSON file dir/name into v; found is false when there is no such file.
func readSideFile(dir, name string, v any) (found bool, err error) {
	path := filepath.Join(dir, name)
	b, err := fileio.ReadFile(path, MaxFileBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("tokenizer: read %s: %w", path, err)
	}
	if err := unmarshalStrict(b, v); err != nil {
		return false, fmt.Errorf("tokenizer: %s: %w: %v", path, ErrFormat, err)
	}
	return true, nil
}

// readAddedTokens adds the tokens of added_tokens.json, then those of tokenizer_config.json's
// added_tokens_decoder, and leaves the rest of tokenizer_config.json in cfg.
func (t *Tokenizer) readAddedTokens(dir string, cfg *configJSON) error {
	var byContent map[string]int
	if _, err := readSideFile(dir, addedTokensFile, &byContent); err != nil {
		return err
	}
	if err := t.addTokens(filepath.Join(dir, addedTokensFile), addedFromMap(byContent)); err != nil {
		return err
	}
	if _, err := readSideFile(dir, configFile, cfg); err != nil {
		return err
	}
	path := filepath.Join(dir, configFile)
	toks, err := addedFromDecoder(cfg.AddedTokensDecoder)
	if err != nil {
		return fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t.addTokens(path, toks)
}

// addedFromMap turns added_tokens.json's {"text": id} into added tokens, in id order.
func addedFromMap(m map[string]int) []AddedToken {
	toks := make([]AddedToken, 0, len(m))
	for content, id := range m {
		toks = append(toks, AddedToken{ID: id, Content: content})
	}
	sortAdded(toks)
	return toks
}

// addedFromDecoder turns added_tokens_decoder's {"id": {"content": …}} into added tokens, in id order.
func addedFromDecoder(m map[string]AddedToken) ([]AddedToken, error) {
	toks := make([]AddedToken, 0, len(m))
	for key, a := range m {
		id, err := strconv.Atoi(key)
		if err != nil {
			return nil, fmt.Errorf("%w: added_tokens_decoder key %q is not an id", ErrFormat, key)
		}
		a.ID = id
		toks = append(toks, a)
	}
	sortAdded(toks)
	return toks, nil
}

// sortAdded orders added tokens by id, then text, so that errors do not depend on map order.
func sortAdded(toks []AddedToken) {
	slices.SortFunc(toks, func(a, b AddedToken) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), strings.Compare(a.Content, b.Content))
	})
}

// addTokens adds the added tokens of the file at path, refusing any that contradicts the tokens so far. An
// id may pass the end of the id table by at most the file's tokens plus idSlack, as buildIDs allows.
func (t *Tokenizer) addTokens(path string, toks []AddedToken) error {
	limit := len(t.idToToken) + len(toks) + idSlack
	for _, a := range toks {
		if err := t.checkAdded(a, limit); err != nil {
			return fmt.Errorf("tokenizer: %s: %w", path, err)
		}
		if a.ID >= len(t.idToToken) {
			t.idToToken = append(t.idToToken, make([]string, a.ID+1-len(t.idToToken))...)
		}
		t.idToToken[a.ID] = a.Content
		t.added.ids[a.Content] = a.ID // seen by TokenID for the next token; the matcher is rebuilt below
		t.addedTokens = append(t.addedTokens, a)
	}
	t.added = newAddedMatcher(t.addedTokens, t.vocab)
	return nil
}

// checkAdded refuses an added token that is empty, has an id outside [0, limit), has the id of another
// token, or is already a token with another id. The same token with the same id (llava-hf lists <s> in
// added_tokens_decoder and in tokenizer.json) is no contradiction.
func (t *Tokenizer) checkAdded(a AddedToken, limit int) error {
	if a.Content == "" || a.ID < 0 || a.ID >= limit {
		return fmt.Errorf("%w: added token %q has id %d (want one in [0, %d))", ErrFormat, a.Content, a.ID, limit)
	}
	if a.ID < len(t.idToToken) && t.idToToken[a.ID] != "" && t.idToToken[a.ID] != a.Content {
		return fmt.Errorf("%w: added token %q has id %d, which is already %q", ErrFormat, a.Content, a.ID, t.idToToken[a.ID])
	}
	if id, ok := t.TokenID(a.Content); ok && id != a.ID {
		return fmt.Errorf("%w: added token %q has id %d, but it is already id %d", ErrFormat, a.Content, a.ID, id)
	}
	return nil
}

// setSpecialTokens applies the special tokens a configuration file names (the file at path): each must be a
// token of the vocabulary or an added token; it sets that id and is matched literally in the text.
func (t *Tokenizer) setSpecialTokens(path string, c *configJSON) error {
	for _, s := range []struct {
		name string
		raw  json.RawMessage
		dst  *int
	}{{"bos_token", c.BOS, &t.bos}, {"eos_token", c.EOS, &t.eos}, {"unk_token", c.UNK, &t.unk}, {"pad_token", c.PAD, &t.pad}} {
		content, err := specialContent(s.raw)
		if err != nil {
			return fmt.Errorf("tokenizer: %s: %w: %s %v", path, ErrFormat, s.name, err)
		}
		if content == "" {
			continue
		}
		id, ok := t.TokenID(content)
		if !ok {
			return fmt.Errorf("tokenizer: %s: %w: %s %q is not a token of the vocabulary or an added token", path, ErrFormat, s.name, content)
		}
		*s.dst = id
		t.addedTokens = append(t.addedTokens, AddedToken{ID: id, Content: content, Special: true})
	}
	return nil
}

// specialContent is the text of a special token given as a string or as {"content": …}; "" for null.
func specialContent(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", fmt.Errorf("is neither a string nor an object with a content")
	}
	return *obj.Content, nil
}
