package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// fileJSON is the part of a Hugging Face tokenizer.json this package reads. truncation, padding and
// post_processor are ignored: callers choose BOS with Encode's addBOS.
type fileJSON struct {
	AddedTokens  []AddedToken    `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        modelJSON       `json:"model"`
}

// AddedToken is one entry of tokenizer.json's added_tokens (and, keyed by id, of tokenizer_config.json's
// added_tokens_decoder), in the order the tokenizers library writes its fields. Reading uses all but
// Normalized; the packages that write tokenizer files use it whole.
type AddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Dropout                 *float64        `json:"dropout"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
}

// componentJSON holds every field the supported normalizers, pre-tokenizers and decoders use.
type componentJSON struct {
	Type           string            `json:"type"`
	Normalizers    []json.RawMessage `json:"normalizers"`
	PreTokenizers  []json.RawMessage `json:"pretokenizers"`
	Decoders       []json.RawMessage `json:"decoders"`
	Prepend        string            `json:"prepend"`
	Pattern        patternJSON       `json:"pattern"`
	Content        json.RawMessage   `json:"content"` // a string (Replace) or a one-character string (Strip)
	Start          int               `json:"start"`
	Stop           int               `json:"stop"`
	Left           *bool             `json:"strip_left"`
	Right          *bool             `json:"strip_right"`
	Replacement    string            `json:"replacement"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	PrependScheme  string            `json:"prepend_scheme"`
	Split          *bool             `json:"split"`
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// unmarshalStrict decodes JSON, rejecting trailing data after the object.
func unmarshalStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}

// isNull says whether a raw JSON value is absent or null.
func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// maxNesting bounds how many Sequences a normalizer, pre-tokenizer or decoder may lie in. Real files use
// one; each level decodes its children again (json.RawMessage), so 2000 nested Sequences in a 72 KB file
// cost 274 MB.
const maxNesting = 8

// parseComponent decodes a normalizer, pre-tokenizer or decoder found depth Sequences deep.
func parseComponent(raw json.RawMessage, what string, depth int) (*componentJSON, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("%w: %s Sequences nested more than %d deep", ErrUnsupported, what, maxNesting)
	}
	var c componentJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrFormat, what, err)
	}
	return &c, nil
}

// build assembles a Tokenizer from a decoded tokenizer.json.
func build(f *fileJSON) (*Tokenizer, error) {
	t := &Tokenizer{vocab: f.Model.Vocab}
	var err error
	if t.model, err = buildModel(&f.Model); err != nil {
		return nil, err
	}
	if t.normalizer, err = buildNormalizer(f.Normalizer, 0); err != nil {
		return nil, err
	}
	if t.pre, err = buildPreTokenizer(f.PreTokenizer, 0); err != nil {
		return nil, err
	}
	if t.decoder, err = buildDecoder(f.Decoder, 0); err != nil {
		return nil, err
	}
	if err = t.buildIDs(f.AddedTokens); err != nil {
		return nil, err
	}
	t.addedTokens = f.AddedTokens
	t.added = newAddedMatcher(t.addedTokens, t.vocab)
	t.setSpecialIDs(&f.Model)
	return t, nil
}

// maxID bounds token ids so that a corrupt file cannot make buildIDs allocate gigabytes.
const maxID = 1 << 24

// idSlack is how many ids past twice the number of tokens the id table may span. Real vocabularies number
// their tokens densely from 0; the table costs 16 bytes an id, so without this bound one token with id
// 2^24−1 in a 53-byte file made a 268 MB table.
const idSlack = 1024

// buildIDs fills idToToken from the vocabulary and the added tokens, refusing two tokens for one id.
func (t *Tokenizer) buildIDs(added []AddedToken) error {
	size, err := idTableSize(t.vocab, added)
	if err != nil {
		return err
	}
	t.idToToken = make([]string, size)
	for tok, id := range t.vocab {
		if t.idToToken[id] != "" {
			return fmt.Errorf("%w: id %d is both %q and %q", ErrFormat, id, t.idToToken[id], tok)
		}
		t.idToToken[id] = tok
	}
	for _, a := range added {
		if old := t.idToToken[a.ID]; old != "" && old != a.Content {
			return fmt.Errorf("%w: id %d is both %q and added token %q", ErrFormat, a.ID, old, a.Content)
		}
		t.idToToken[a.ID] = a.Content
	}
	return nil
}

// idTableSize is one more than the largest id, checked against maxID and idSlack.
func idTableSize(vocab map[string]int, added []AddedToken) (int, error) {
	size := 0
	for tok, id := range vocab {
		if id < 0 || id >= maxID {
			return 0, fmt.Errorf("%w: token %q has id %d outside [0, %d)", ErrFormat, tok, id, maxID)
		}
		size = max(size, id+1)
	}
	for _, a := range added {
		if a.ID < 0 || a.ID >= maxID || a.Content == "" {
			return 0, fmt.Errorf("%w: added token %q with id %d", ErrFormat, a.Content, a.ID)
		}
		size = max(size, a.ID+1)
	}
	if tokens := len(vocab) + len(added); size > 2*tokens+idSlack {
		return 0, fmt.Errorf("%w: ids up to %d for %d tokens (at most twice the tokens plus %d)", ErrFormat, size-1, tokens, idSlack)
	}
	return size, nil
}

// setSpecialIDs finds <s>, </s>, the unknown token and the padding token.
func (t *Tokenizer) setSpecialIDs(m *modelJSON) {
	find := func(tok string) int {
		if id, ok := t.TokenID(tok); ok {
			return id
		}
		return -1
	}
	t.bos, t.eos, t.unk = find("<s>"), find("</s>"), find("<unk>")
	if m.UnkToken != nil {
		if id := find(*m.UnkToken); id >= 0 {
			t.unk = id
		}
	}
	t.pad = find("<pad>")
	if t.pad < 0 {
		t.pad = t.unk
	}
}
