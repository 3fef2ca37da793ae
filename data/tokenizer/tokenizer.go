// Package tokenizer encodes text as LLaVA's LLaMA/Vicuna tokenizer does, from a Hugging Face tokenizer.json
// or a SentencePiece tokenizer.model.
//
// It supports the model families flextrain needs:
//
//   - BPE with byte_fallback, as LLaMA, Vicuna and LLaVA-1.5 use: normalizer Sequence[Prepend("▁"),
//     Replace(" ", "▁")] (or the Metaspace pre-tokenizer of other tokenizer.json files), merges applied by rank,
//     characters outside the vocabulary spelled as <0xXX> byte tokens;
//   - the same model as a SentencePiece BPE tokenizer.model (what liuhaotian/llava-v1.5-7b ships), read by
//     ParseSentencePiece and mapped onto the same BPE: merges ranked by the score of the piece they make,
//     USER_DEFINED pieces matched whole, SentencePiece's identity normalizer (dummy "▁" prefix,
//     remove_extra_whitespaces, escape_whitespaces). Other SentencePiece models (UNIGRAM as T5's, a
//     normalization rule such as nmt_nfkc, UNUSED pieces, whitespace as a suffix) fail with ErrUnsupported;
//   - WordLevel with a Whitespace pre-tokenizer, for small synthetic vocabularies.
//
// Added tokens (<s>, </s>, <unk>, …) written literally in the text are matched first and become single ids;
// the text between them is encoded piece by piece, each piece as a fresh SentencePiece string (with its dummy
// "▁" prefix). That is what the slow LlamaTokenizer LLaVA trains with does (legacy mode), so "a</s>USER"
// encodes as tok("a") + [2] + tok("USER"). LoadDir reads a model folder: its tokenizer.json or
// tokenizer.model plus the added and special tokens of its added_tokens.json, tokenizer_config.json and
// special_tokens_map.json (llava-hf's <image> and <pad>).
//
// The tokenizer.model reader is this package's own rather than github.com/eliben/go-sentencepiece (v0.6.0),
// which was written for Gemma and does not fit: it refuses add_dummy_prefix and remove_extra_whitespaces,
// so LLaMA's model fails to load; it finds BOS and EOS under Gemma's names ("<bos>"), not LLaMA's; it does
// not fuse unknown characters without byte fallback, nor split UNUSED pieces back; its Decode indexes the
// pieces with the id unchecked (LLaVA's image placeholder -200 panics); it reads a file whole with no size
// bound through the full protobuf runtime; and it knows nothing of added tokens. Reading the few fields
// needed takes two hundred lines, and SentencePiece's BPE is this package's BPE once the merges are ranked by
// score.
//
// Where the two differ on input Python cannot even hold, this package keeps its own rule for both file kinds:
// a byte that is not UTF-8 is spelled as its byte token, where SentencePiece reads U+FFFD.
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
	"os"
	"strings"

	"github.com/flextrain/flextrain/internal/fileio"
)

// ErrFormat reports a tokenizer file that cannot be decoded (JSON, protocol buffer) or is inconsistent (a
// merge of unknown tokens, a duplicate id, an added token whose id another token has).
var ErrFormat = errors.New("tokenizer: malformed tokenizer file")

// ErrUnsupported reports a tokenizer.json component (model, normalizer, pre-tokenizer, decoder) or a
// SentencePiece setting that this package does not implement; it refuses rather than encode differently
// from Hugging Face or SentencePiece.
var ErrUnsupported = errors.New("tokenizer: unsupported tokenizer component")

// Tokenizer turns text into token ids and back. The zero value is not usable: build one with Load, LoadDir,
// Parse or ParseSentencePiece.
type Tokenizer struct {
	model       model
	normalizer  normalizer    // nil: text is used as is
	pre         preTokenizer  // nil: each piece of text is one word
	decoder     decoder       // nil: tokens are joined with spaces, as Hugging Face does
	added       *addedMatcher // literal added tokens in the text
	addedTokens []AddedToken  // what added was built from (with the vocabulary), for LoadDir to extend
	idToToken   []string      // "" where no token has that id
	vocab       map[string]int
	bos, eos    int
	unk, pad    int
}

// MaxFileBytes bounds a tokenizer file, on disk and once decompressed: 64 MiB, some 30 times LLaMA's
// tokenizer.json (1.8 MB) and 128 times its tokenizer.model (500 kB), so that a wrong path or a gzip bomb
// fails with an error instead of exhausting memory. LoadDir holds the JSON files beside it to the same
// bound. Errors past it wrap fileio.ErrTooLarge.
const MaxFileBytes = 64 << 20

// gzipMagic starts every gzip stream.
var gzipMagic = []byte{0x1f, 0x8b}

// Load reads a tokenizer.json or a SentencePiece tokenizer.model, told apart by their content (a JSON object,
// else a protocol buffer), either of them plain or gzip-compressed (detected by its magic bytes); a folder
// is read by LoadDir (a published model's, with its added tokens). Only a regular file of at most
// MaxFileBytes is read (a FIFO or a device fails at once), and it may decompress to at most MaxFileBytes.
func Load(path string) (*Tokenizer, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return LoadDir(path)
	}
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

// parseFile is Parse or ParseSentencePiece of the bytes of a tokenizer file, decompressed first (to at
// most limit bytes) when they are gzip.
func parseFile(b []byte, limit int64) (*Tokenizer, error) {
	b, err := inflate(b, limit)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if isJSONObject(b) {
		return Parse(b)
	}
	return ParseSentencePiece(b)
}

// isJSONObject says whether b starts, after JSON white space, with '{'. A SentencePiece model starts with
// the tag of its first piece (0x0A) and that piece's length, a small number: it would pass for JSON only if
// a byte after a run of tabs, newlines, carriage returns and spaces were 0x7B.
func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
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
