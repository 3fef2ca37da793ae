package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// model turns one word (after normalization and pre-tokenization) into ids, appending them to ids.
type model interface {
	tokenize(ids []int, word string) []int
}

func buildModel(m *modelJSON) (model, error) {
	if len(m.Vocab) == 0 {
		return nil, fmt.Errorf("%w: model %q has an empty vocab", ErrFormat, m.Type)
	}
	unk := -1
	if m.UnkToken != nil {
		id, ok := m.Vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("%w: unk_token %q is not in the vocab", ErrFormat, *m.UnkToken)
		}
		unk = id
	}
	switch m.Type {
	case "BPE", "": // older files leave the type out of BPE models
		return newBPE(m, unk)
	case "WordLevel":
		return wordLevel{vocab: m.Vocab, unk: unk}, nil
	}
	return nil, fmt.Errorf("%w: model %q", ErrUnsupported, m.Type)
}

// wordLevel maps each whole word to its id, or to unk (dropped when there is no unk_token).
type wordLevel struct {
	vocab map[string]int
	unk   int
}

func (w wordLevel) tokenize(ids []int, word string) []int {
	if id, ok := w.vocab[word]; ok {
		return append(ids, id)
	}
	if w.unk >= 0 {
		return append(ids, w.unk)
	}
	return ids
}

// merge is the result of merging a pair of ids: its rank (lower merges first) and the merged id.
type merge struct {
	rank int32
	id   int32
}

// bpe is a byte-pair-encoding model: a word starts as one symbol per character and the pair of adjacent
// symbols with the lowest merge rank is merged until no pair can be (the leftmost pair wins a tie).
type bpe struct {
	vocab        map[string]int
	merges       map[uint64]merge // key: left id << 32 | right id
	unk          int
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteIDs      [256]int      // id of "<0xXX>", -1 when missing
	frozen       *addedMatcher // SentencePiece's USER_DEFINED pieces, matched whole and never merged; nil: none
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func newBPE(m *modelJSON, unk int) (*bpe, error) {
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, fmt.Errorf("%w: BPE dropout %g", ErrUnsupported, *m.Dropout)
	}
	if (m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "") ||
		(m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "") {
		return nil, fmt.Errorf("%w: BPE continuing_subword_prefix or end_of_word_suffix", ErrUnsupported)
	}
	b := &bpe{vocab: m.Vocab, unk: unk, fuseUnk: m.FuseUnk, byteFallback: m.ByteFallback, ignoreMerges: m.IgnoreMerges}
	for i := range b.byteIDs {
		b.byteIDs[i] = -1
		if id, ok := m.Vocab[fmt.Sprintf("<0x%02X>", i)]; ok {
			b.byteIDs[i] = id
		}
	}
	pairs, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	return b, b.setMerges(pairs)
}

// parseMerges reads merges as either ["a b", …] or [["a", "b"], …], told apart by the first element. (Trying
// one form and then the other decoded a long list twice: encoding/json goes on through an array after a
// type error.)
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	if pairForm(raw) {
		var pairs [][2]string
		if err := json.Unmarshal(raw, &pairs); err != nil {
			return nil, fmt.Errorf("%w: merges: %v", ErrFormat, err)
		}
		return pairs, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err != nil {
		return nil, fmt.Errorf("%w: merges: %v", ErrFormat, err)
	}
	pairs := make([][2]string, len(strs))
	for i, s := range strs {
		a, b, ok := strings.Cut(s, " ")
		if !ok || a == "" || b == "" {
			return nil, fmt.Errorf("%w: merge %d %q is not two tokens", ErrFormat, i, s)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

// pairForm reports whether a JSON array of merges starts with an array: the [["a", "b"], …] form.
func pairForm(raw json.RawMessage) bool {
	const space = " \t\r\n"
	rest := bytes.TrimLeft(bytes.TrimPrefix(bytes.TrimLeft(raw, space), []byte("[")), space)
	return len(rest) > 0 && rest[0] == '['
}

func (b *bpe) setMerges(pairs [][2]string) error {
	b.merges = make(map[uint64]merge, len(pairs))
	for rank, p := range pairs {
		l, lok := b.vocab[p[0]]
		r, rok := b.vocab[p[1]]
		m, mok := b.vocab[p[0]+p[1]]
		if !lok || !rok || !mok {
			return fmt.Errorf("%w: merge %d (%q %q) uses a token missing from the vocab", ErrFormat, rank, p[0], p[1])
		}
		key := pairKey(int32(l), int32(r))
		if _, dup := b.merges[key]; !dup { // the first (best-ranked) copy of a merge wins
			b.merges[key] = merge{rank: int32(rank), id: int32(m)}
		}
	}
	return nil
}

func (b *bpe) tokenize(ids []int, word string) []int {
	if b.ignoreMerges {
		if id, ok := b.vocab[word]; ok {
			return append(ids, id)
		}
	}
	w := b.symbols(word)
	w.mergeAll(b.merges)
	for i := 0; i >= 0 && i < len(w.id); i = int(w.next[i]) {
		ids = append(ids, int(w.id[i]))
	}
	return ids
}

// symbols spells a word as one id per symbol: a user-defined piece, else a character's token, else its UTF-8
// bytes' tokens with byte fallback, else unk (consecutive unks fused into one with fuse_unk).
func (b *bpe) symbols(word string) *symbolList {
	w := &symbolList{id: make([]int32, 0, len(word))}
	lastUnk := false
	for i := 0; i < len(word); {
		n, known := b.symbolAt(w, word, i)
		if !known && b.unk >= 0 && !(b.fuseUnk && lastUnk) {
			w.id = append(w.id, int32(b.unk))
		}
		lastUnk = !known && b.unk >= 0
		i += n
	}
	w.link()
	return w
}

// symbolAt appends the ids of the symbol at byte i of word and returns its length in bytes; known is false
// when it is a character with neither a token nor byte tokens, for which the caller appends unk. A byte that
// is not UTF-8 is spelled as its byte token even if the vocabulary has U+FFFD.
func (b *bpe) symbolAt(w *symbolList, word string, i int) (n int, known bool) {
	if b.frozen != nil {
		if t, ok := b.frozen.matchAt(word, i); ok {
			w.id = append(w.id, int32(t.id))
			return len(t.content), true
		}
	}
	r, size := utf8.DecodeRuneInString(word[i:])
	ch := word[i : i+size]
	if id, ok := b.vocab[ch]; ok && !(r == utf8.RuneError && size == 1) {
		w.id = append(w.id, int32(id))
		return size, true
	}
	return size, b.byteFallback && b.appendBytes(w, ch)
}

// appendBytes appends the byte tokens of ch; it appends nothing and reports false if one is missing.
func (b *bpe) appendBytes(w *symbolList, ch string) bool {
	for j := 0; j < len(ch); j++ {
		if b.byteIDs[ch[j]] < 0 {
			return false
		}
	}
	for j := 0; j < len(ch); j++ {
		w.id = append(w.id, int32(b.byteIDs[ch[j]]))
	}
	return true
}
