package pretrained

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/internal/atomicfile"
	"github.com/flextrain/flextrain/internal/fileio"
)

// TokenizerFiles are the files of a Hugging Face tokenizer that Write copies, those present.
var TokenizerFiles = []string{"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"}

// maxTokenizerBytes bounds a tokenizer file (LLaMA's tokenizer.json holds 1.8 MB).
const maxTokenizerBytes = 64 << 20

// writeTokenizer copies the tokenizer files, naming llava-hf's new tokens in them when the plan adds them.
func (p *writePlan) writeTokenizer(dir string) error {
	if p.opts.Tokenizer == "" {
		return nil
	}
	files, err := readTokenizerFiles(p.opts.Tokenizer)
	if err != nil {
		return err
	}
	if p.addHF {
		if err := addHFTokens(files, p.hf); err != nil {
			return fmt.Errorf("tokenizer %s: %w", p.opts.Tokenizer, err)
		}
	}
	for _, name := range sortedKeys(files) {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), files[name]); err != nil {
			return err
		}
	}
	return nil
}

// readTokenizerFiles reads the TokenizerFiles that dir holds, or the tokenizer file dir under its kind's name.
func readTokenizerFiles(dir string) (map[string][]byte, error) {
	if isFile(dir) {
		b, err := fileio.ReadFile(dir, maxTokenizerBytes)
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			return nil, fmt.Errorf("tokenizer %s is gzip-compressed: Hugging Face reads tokenizer files plain; decompress it", dir)
		}
		if bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("{")) {
			return map[string][]byte{"tokenizer.json": b}, nil
		}
		return map[string][]byte{"tokenizer.model": b}, nil
	}
	files := map[string][]byte{}
	for _, name := range TokenizerFiles {
		path := filepath.Join(dir, name)
		if !isFile(path) {
			continue
		}
		b, err := fileio.ReadFile(path, maxTokenizerBytes)
		if err != nil {
			return nil, err
		}
		files[name] = b
	}
	return files, nil
}

// newToken is a token llava-hf adds.
type newToken struct {
	content string
	id      int
}

// addHFTokens names "<image>" and "<pad>" in the tokenizer files, as transformers' llava conversion does:
// added_tokens.json (written even when absent), special_tokens_map.json's pad_token (likewise),
// tokenizer.json's added_tokens and tokenizer_config.json's added_tokens_decoder and pad_token (when present).
func addHFTokens(files map[string][]byte, hf HFTokens) error {
	toks := []newToken{{"<image>", hf.Image}, {"<pad>", hf.Pad}}
	for _, step := range []struct {
		name   string
		always bool
		edit   func(map[string]json.RawMessage, []newToken) error
	}{
		{"added_tokens.json", true, editAddedTokens},
		{"special_tokens_map.json", true, editSpecialMap},
		{"tokenizer.json", false, editTokenizerJSON},
		{"tokenizer_config.json", false, editTokenizerConfig},
	} {
		if err := editFile(files, step.name, step.always, func(m map[string]json.RawMessage) error { return step.edit(m, toks) }); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}
	return nil
}

// editFile decodes a JSON object file of files (an empty one when absent and always), edits it, and encodes it.
func editFile(files map[string][]byte, name string, always bool, edit func(map[string]json.RawMessage) error) error {
	b, ok := files[name]
	if !ok && !always {
		return nil
	}
	m := map[string]json.RawMessage{}
	if ok {
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
	}
	if err := edit(m); err != nil {
		return err
	}
	out, err := encodeJSON(m)
	files[name] = out
	return err
}

// editAddedTokens adds the tokens to added_tokens.json's content → id map.
func editAddedTokens(m map[string]json.RawMessage, toks []newToken) error {
	for _, t := range toks {
		if raw, ok := m[t.content]; ok && string(raw) != strconv.Itoa(t.id) {
			return fmt.Errorf("%q is already id %s, not %d", t.content, raw, t.id)
		}
		m[t.content] = json.RawMessage(strconv.Itoa(t.id))
	}
	return nil
}

// editSpecialMap makes "<pad>" the padding token.
func editSpecialMap(m map[string]json.RawMessage, _ []newToken) error {
	m["pad_token"] = json.RawMessage(`"<pad>"`)
	return nil
}

// editTokenizerJSON appends the tokens to tokenizer.json's added_tokens, refusing an id or a content taken.
func editTokenizerJSON(m map[string]json.RawMessage, toks []newToken) error {
	var added []tokenizer.AddedToken
	if raw, ok := m["added_tokens"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &added); err != nil {
			return err
		}
	}
	for _, t := range toks {
		if present, err := checkAdded(added, t); err != nil || present {
			if err != nil {
				return err
			}
			continue
		}
		added = append(added, tokenizer.AddedToken{ID: t.id, Content: t.content, Special: true})
	}
	raw, err := encodeJSON(added)
	m["added_tokens"] = raw
	return err
}

// checkAdded reports whether t is among added already, refusing its id or content with another partner.
func checkAdded(added []tokenizer.AddedToken, t newToken) (bool, error) {
	for _, a := range added {
		switch {
		case a.Content == t.content && a.ID == t.id:
			return true, nil
		case a.Content == t.content || a.ID == t.id:
			return false, fmt.Errorf("added token %q is id %d; llava-hf needs %q at %d", a.Content, a.ID, t.content, t.id)
		}
	}
	return false, nil
}

// decoderEntry is one of tokenizer_config.json's added_tokens_decoder, as transformers writes it.
type decoderEntry struct {
	Content    string `json:"content"`
	LStrip     bool   `json:"lstrip"`
	Normalized bool   `json:"normalized"`
	RStrip     bool   `json:"rstrip"`
	SingleWord bool   `json:"single_word"`
	Special    bool   `json:"special"`
}

// editTokenizerConfig adds the tokens to tokenizer_config.json's added_tokens_decoder and makes "<pad>" its
// pad_token.
func editTokenizerConfig(m map[string]json.RawMessage, toks []newToken) error {
	dec := map[string]json.RawMessage{}
	if raw, ok := m["added_tokens_decoder"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &dec); err != nil {
			return err
		}
	}
	for _, t := range toks {
		raw, err := encodeJSON(decoderEntry{Content: t.content, Special: true})
		if err != nil {
			return err
		}
		dec[strconv.Itoa(t.id)] = raw
	}
	var err error
	m["added_tokens_decoder"], err = encodeJSON(dec)
	m["pad_token"] = json.RawMessage(`"<pad>"`)
	return err
}

// encodeJSON encodes v indented, without escaping "<" and ">" (the tokens are spelt so).
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	return buf.Bytes(), err
}
