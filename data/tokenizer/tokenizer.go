// Package tokenizer encodes text with a Hugging Face tokenizer.json, as LLaVA's LLaMA/Vicuna tokenizer does.
//
// It supports the two model families flextrain needs:
//
//   - BPE with byte_fallback, as LLaMA, Vicuna and LLaVA-1.5 use: normalizer Sequence[Prepend("▁"),
//     Replace(" ", "▁")] (or the Metaspace pre-tokenizer of other tokenizer.json files), merges applied by rank,
//     characters outside the vocabulary spelled as <0xXX> byte tokens;
//   - WordLevel with a Whitespace pre-tokenizer, for small synthetic vocabularies.
//
// Added tokens (<s>, </s>, <unk>, …) written literally in the text are matched first and become single ids;
// the text between them is encoded piece by piece, each piece as a fresh SentencePiece string (with its dummy
// "▁" prefix). That is what the slow LlamaTokenizer LLaVA trains with does (legacy mode), so "a</s>USER"
// encodes as tok("a") + [2] + tok("USER").
//
// Example:
//
//	tok, err := tokenizer.Load("tokenizer.json")
//	if err != nil {
//		return err
//	}
//	ids := tok.Encode("What is this?", true) // [1 1724 338 445 29973]
//	text := tok.Decode(ids[1:])              // "What is this?"
//
// A Tokenizer is immutable once loaded and safe for concurrent use.
package tokenizer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/flextrain/flextrain/internal/fileio"
)

// ErrFormat reports a tokenizer.json that is not valid JSON or is inconsistent (a merge of unknown tokens,
// a duplicate id).
var ErrFormat = errors.New("tokenizer: malformed tokenizer.json")

// ErrUnsupported reports a tokenizer.json component (model, normalizer, pre-tokenizer, decoder) that this
// package does not implement; it refuses rather than encode differently from Hugging Face.
var ErrUnsupported = errors.New("tokenizer: unsupported tokenizer.json component")

// Tokenizer turns text into token ids and back. The zero value is not usable: build one with Load or Parse.
type Tokenizer struct {
	model      model
	normalizer normalizer    // nil: text is used as is
	pre        preTokenizer  // nil: each piece of text is one word
	decoder    decoder       // nil: tokens are joined with spaces, as Hugging Face does
	added      *addedMatcher // literal added tokens in the text
	idToToken  []string      // "" where no token has that id
	vocab      map[string]int
	bos, eos   int
	unk, pad   int
}

// MaxFileBytes bounds a tokenizer.json, on disk and once decompressed: 64 MiB, some 30 times LLaMA's
// (1.8 MB), so that a wrong path or a gzip bomb fails with an error instead of exhausting memory. Errors
// past it wrap fileio.ErrTooLarge.
const MaxFileBytes = 64 << 20

// gzipMagic starts every gzip stream.
var gzipMagic = []byte{0x1f, 0x8b}

// Load reads a tokenizer.json file, plain or gzip-compressed (detected by its magic bytes). Only a regular
// file of at most MaxFileBytes is read (a FIFO or a device fails at once), and it may decompress to at most
// MaxFileBytes.
func Load(path string) (*Tokenizer, error) {
	b, err := fileio.ReadFile(path, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: read %s: %w", path, err)
	}
	t, err := parseFile(b, MaxFileBytes)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: load %s: %w", path, err)
	}
	return t, nil
}

// parseFile is Parse of the bytes of a tokenizer.json file, decompressed first (to at most limit bytes)
// when they are gzip.
func parseFile(b []byte, limit int64) (*Tokenizer, error) {
	b, err := inflate(b, limit)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	return Parse(b)
}

// inflate returns b decompressed when it is gzip, else b itself. It stops past limit bytes of output, so
// that a small file cannot expand to gigabytes.
func inflate(b []byte, limit int64) ([]byte, error) {
	if !bytes.HasPrefix(b, gzipMagic) {
		return b, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, fmt.Errorf("%w: more than %d bytes decompressed", fileio.ErrTooLarge, limit)
	}
	return out.Bytes(), nil
}

// Parse builds a Tokenizer from the bytes of a tokenizer.json. Errors wrap ErrFormat or ErrUnsupported.
func Parse(b []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := unmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	return build(&f)
}

// Encode returns the token ids of text, with the BOS id first when addBOS is set (and the vocabulary has one).
// It never fails: characters outside the vocabulary become byte tokens, or the UNK id without byte fallback.
// Invalid UTF-8 bytes are encoded as the byte tokens of those bytes.
func (t *Tokenizer) Encode(text string, addBOS bool) []int {
	ids := make([]int, 0, len(text)/3+2)
	if addBOS && t.bos >= 0 {
		ids = append(ids, t.bos)
	}
	for _, seg := range t.added.split(text) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		ids = t.encodePiece(ids, seg.text, seg.start == 0)
	}
	return ids
}

// encodePiece appends the ids of a piece of text that holds no added token. first says whether the piece
// begins the whole text (Metaspace's prepend_scheme "first" needs it).
func (t *Tokenizer) encodePiece(ids []int, s string, first bool) []int {
	if s == "" {
		return ids
	}
	if t.normalizer != nil {
		s = t.normalizer.normalize(s)
	}
	if t.pre == nil {
		return t.model.tokenize(ids, s)
	}
	for _, w := range t.pre.split(s, first) {
		ids = t.model.tokenize(ids, w)
	}
	return ids
}

// Decode turns ids back into text through the tokenizer.json decoder. Special tokens are kept as their text
// (like Hugging Face's decode with skip_special_tokens=False); ids outside the vocabulary, such as the image
// placeholder -200, are skipped.
func (t *Tokenizer) Decode(ids []int) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id >= 0 && id < len(t.idToToken) && t.idToToken[id] != "" {
			toks = append(toks, t.idToToken[id])
		}
	}
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decode(toks), "")
}

// VocabSize is one more than the largest id of the vocabulary and added tokens (32000 for LLaMA).
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// BOS is the id of "<s>", or -1 when the vocabulary has none.
func (t *Tokenizer) BOS() int { return t.bos }

// EOS is the id of "</s>", or -1 when the vocabulary has none.
func (t *Tokenizer) EOS() int { return t.eos }

// UNK is the id of the model's unk_token (else "<unk>"), or -1 when there is none.
func (t *Tokenizer) UNK() int { return t.unk }

// PAD is the id of "<pad>" when the vocabulary has one, else UNK: LLaVA pads with unk_token.
func (t *Tokenizer) PAD() int { return t.pad }

// TokenID returns the id of a token string as the vocabulary spells it ("▁the", "<0x0A>", "</s>").
func (t *Tokenizer) TokenID(tok string) (int, bool) {
	if id, ok := t.added.ids[tok]; ok {
		return id, true
	}
	id, ok := t.vocab[tok]
	return id, ok
}
