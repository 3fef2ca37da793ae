package tokenizer

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// ParseSentencePiece builds a Tokenizer from the bytes of a SentencePiece model (a tokenizer.model, the
// ModelProto protocol buffer), encoding as SentencePiece does, inside the slow LlamaTokenizer that LLaVA
// trains with. Errors wrap ErrFormat or ErrUnsupported.
func ParseSentencePiece(b []byte) (*Tokenizer, error) {
	m, err := decodeModelProto(b)
	if err != nil {
		return nil, fmt.Errorf("%w: SentencePiece model: %v", ErrFormat, err)
	}
	if err := m.checkSupported(); err != nil {
		return nil, err
	}
	return m.build()
}

// checkSupported refuses the models this package would encode differently from SentencePiece.
func (m *modelProto) checkSupported() error {
	switch {
	case len(m.pieces) == 0: // an empty file, or one that is neither JSON nor a SentencePiece model
		return fmt.Errorf("%w: SentencePiece model without pieces", ErrFormat)
	case m.trainer.modelType != modelBPE:
		name, ok := modelTypeNames[m.trainer.modelType]
		if !ok {
			name = fmt.Sprint(m.trainer.modelType)
		}
		return fmt.Errorf("%w: SentencePiece model type %s (only BPE)", ErrUnsupported, name)
	case m.trainer.wsSuffix:
		return fmt.Errorf("%w: SentencePiece treat_whitespace_as_suffix", ErrUnsupported)
	case m.norm.charsmap:
		return fmt.Errorf("%w: SentencePiece normalizer %q with a character map (only identity)", ErrUnsupported, m.norm.name)
	case m.denorm:
		return fmt.Errorf("%w: SentencePiece denormalizer with a character map", ErrUnsupported)
	}
	return nil
}

// build maps the model onto the package's BPE: the pieces are the vocabulary, merges come from their
// scores, USER_DEFINED pieces are matched whole and never merged, the normalizer is SentencePiece's.
func (m *modelProto) build() (*Tokenizer, error) {
	t := &Tokenizer{vocab: make(map[string]int, len(m.pieces)), idToToken: make([]string, len(m.pieces))}
	b := &bpe{vocab: t.vocab, unk: -1, fuseUnk: true, byteFallback: m.trainer.byteFallback}
	user, err := m.indexPieces(t, b)
	if err == nil {
		err = m.checkUnkAndBytes(b)
	}
	if err == nil {
		err = m.setSpecialIDs(t, b.unk)
	}
	if err == nil {
		err = m.setScoreMerges(b)
	}
	if err != nil {
		return nil, err
	}
	if len(user) > 0 {
		b.frozen = newAddedMatcher(user, nil)
	}
	n := spmNormalizer{dummyPrefix: m.norm.dummyPrefix, removeExtra: m.norm.removeExtra, escape: m.norm.escape}
	t.model, t.normalizer, t.decoder = b, n, n.decoder()
	t.addedTokens = specialTokens(t)
	t.added = newAddedMatcher(t.addedTokens, t.vocab)
	return t, nil
}

// indexPieces fills the vocabulary and the id table, records the unknown and byte pieces, and returns the
// USER_DEFINED ones. A piece spelled twice is refused: SentencePiece would give the spelling the id of
// whichever it looks up first.
func (m *modelProto) indexPieces(t *Tokenizer, b *bpe) ([]AddedToken, error) {
	for i := range b.byteIDs {
		b.byteIDs[i] = -1
	}
	var user []AddedToken
	for id, p := range m.pieces {
		if old, dup := t.vocab[p.text]; dup {
			return nil, fmt.Errorf("%w: piece %q is both id %d and id %d", ErrFormat, p.text, old, id)
		}
		t.vocab[p.text], t.idToToken[id] = id, p.text
		if p.typ == pieceUserDefined {
			user = append(user, AddedToken{ID: id, Content: p.text})
		} else if err := m.indexSpecial(b, id, p); err != nil {
			return nil, err
		}
	}
	return user, nil
}

// indexSpecial records the unknown piece and the byte pieces, and refuses UNUSED pieces (SentencePiece splits
// them back into the pieces they were merged from; no LLaMA-family model has one).
func (m *modelProto) indexSpecial(b *bpe, id int, p spmPiece) error {
	switch p.typ {
	case pieceUnknown:
		if b.unk >= 0 {
			return fmt.Errorf("%w: two unknown pieces, ids %d and %d", ErrFormat, b.unk, id)
		}
		if utf8.RuneCountInString(p.text) == 1 { // SentencePiece spells that character in bytes, not as <unk>
			return fmt.Errorf("%w: unknown piece %q of one character", ErrUnsupported, p.text)
		}
		b.unk = id
	case pieceByte:
		return m.indexByte(b, id, p.text)
	case pieceUnused:
		return fmt.Errorf("%w: UNUSED piece %d %q", ErrUnsupported, id, p.text)
	}
	return nil
}

// indexByte records a BYTE piece, which must be spelled <0xXX> (upper-case hex) and come with byte_fallback.
func (m *modelProto) indexByte(b *bpe, id int, text string) error {
	v, ok := byteToken(text)
	if !ok || text != fmt.Sprintf("<0x%02X>", v) {
		return fmt.Errorf("%w: byte piece %d %q is not spelled <0xXX>", ErrFormat, id, text)
	}
	if !m.trainer.byteFallback {
		return fmt.Errorf("%w: byte piece %d %q without byte_fallback", ErrFormat, id, text)
	}
	b.byteIDs[v] = id
	return nil
}

// checkUnkAndBytes requires the unknown piece, and all 256 byte pieces with byte_fallback (spm_train writes
// them all; without one, SentencePiece would spell that byte as <unk> while this package's BPE would spell
// the whole character so).
func (m *modelProto) checkUnkAndBytes(b *bpe) error {
	if b.unk < 0 {
		return fmt.Errorf("%w: no unknown piece", ErrFormat)
	}
	for v, id := range b.byteIDs {
		if m.trainer.byteFallback && id < 0 {
			return fmt.Errorf("%w: byte_fallback without the byte piece <0x%02X>", ErrFormat, v)
		}
	}
	return nil
}

// setSpecialIDs takes UNK, BOS, EOS and PAD from the trainer spec (-1: none), checking that UNK is the unknown
// piece and the others control pieces. PAD defaults to UNK: LLaVA pads with unk_token.
func (m *modelProto) setSpecialIDs(t *Tokenizer, unk int) error {
	if int(m.trainer.unk) != unk {
		return fmt.Errorf("%w: unk_id %d is not the unknown piece %d", ErrFormat, m.trainer.unk, unk)
	}
	t.unk = unk
	var err error
	for _, s := range []struct {
		name string
		id   int32
		dst  *int
	}{{"bos_id", m.trainer.bos, &t.bos}, {"eos_id", m.trainer.eos, &t.eos}, {"pad_id", m.trainer.pad, &t.pad}} {
		if *s.dst, err = m.controlID(s.name, s.id); err != nil {
			return err
		}
	}
	if t.pad < 0 {
		t.pad = t.unk
	}
	return nil
}

// controlID checks that id, unless negative (none), is a control piece.
func (m *modelProto) controlID(name string, id int32) (int, error) {
	if id < 0 {
		return -1, nil
	}
	if int(id) >= len(m.pieces) || m.pieces[id].typ != pieceControl {
		return -1, fmt.Errorf("%w: %s %d is not a control piece", ErrFormat, name, id)
	}
	return int(id), nil
}

// specialTokens lists the unknown, BOS and EOS pieces: the slow LlamaTokenizer matches its unk, bos and eos
// tokens literally in the text before SentencePiece sees it.
func specialTokens(t *Tokenizer) []AddedToken {
	var added []AddedToken
	for _, id := range []int{t.unk, t.bos, t.eos} {
		if id >= 0 {
			added = append(added, AddedToken{ID: id, Content: t.idToToken[id], Special: true})
		}
	}
	return added
}

// maxPieceBytes bounds a NORMAL piece. Finding its merges looks up both halves of each of its splits, which
// costs the square of its length; 256 bytes keep that under some 500 bytes hashed per byte of the file.
// LLaMA's longest piece is 48 bytes (sixteen "▁"); spm_train's default max_sentencepiece_length is 16
// characters.
const maxPieceBytes = 256

// setScoreMerges gives b a merge for every split of a NORMAL piece into two pieces that can merge, ranked by
// the piece's score. SentencePiece's BPE merges, of all adjacent pairs whose concatenation is a piece, the
// one whose piece scores highest, the leftmost on a tie: so the rank is that of the score among the
// distinct scores, and pairs that make pieces of equal score share it (mergeAll then takes the leftmost).
func (m *modelProto) setScoreMerges(b *bpe) error {
	ranks := m.scoreRanks()
	b.merges = make(map[uint64]merge)
	for id, p := range m.pieces {
		if p.typ != pieceNormal {
			continue
		}
		if err := m.addSplits(b, id, ranks[id]); err != nil {
			return err
		}
	}
	return nil
}

// scoreRanks numbers the distinct scores of the NORMAL pieces from the highest (rank 0) down. Other pieces
// never result from a merge and keep rank 0.
func (m *modelProto) scoreRanks() []int32 {
	order := make([]int32, 0, len(m.pieces))
	for id, p := range m.pieces {
		if p.typ == pieceNormal {
			order = append(order, int32(id))
		}
	}
	score := func(id int32) float32 { return m.pieces[id].score }
	slices.SortFunc(order, func(a, b int32) int { return cmp.Or(cmp.Compare(score(b), score(a)), cmp.Compare(a, b)) })
	ranks := make([]int32, len(m.pieces))
	rank := int32(0)
	for i, id := range order {
		if i > 0 && cmp.Compare(score(order[i-1]), score(id)) != 0 {
			rank++
		}
		ranks[id] = rank
	}
	return ranks
}

// addSplits adds the merges that make piece id, after checking that each of its characters is a piece:
// SentencePiece would merge a character outside the vocabulary into the piece, where this package's BPE
// spells it in bytes at once. (spm_train keeps every character of a piece as a piece; bytes that are not
// UTF-8 are left alone: neither ever merges them.)
func (m *modelProto) addSplits(b *bpe, id int, rank int32) error {
	s := m.pieces[id].text
	if len(s) > maxPieceBytes {
		return fmt.Errorf("%w: piece %d is %d bytes long (at most %d)", ErrUnsupported, id, len(s), maxPieceBytes)
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if _, ok := b.vocab[s[i:i+size]]; !ok && !(r == utf8.RuneError && size == 1) {
			return fmt.Errorf("%w: piece %d %q holds %q, which is not a piece", ErrUnsupported, id, s, s[i:i+size])
		}
		if i > 0 {
			m.addMerge(b, s[:i], s[i:], id, rank)
		}
		i += size
	}
	return nil
}

// addMerge adds the merge of left and right into piece id when both can merge.
func (m *modelProto) addMerge(b *bpe, left, right string, id int, rank int32) {
	l, lok := b.vocab[left]
	r, rok := b.vocab[right]
	if lok && rok && m.mergeable(l) && m.mergeable(r) {
		b.merges[pairKey(int32(l), int32(r))] = merge{rank: rank, id: int32(id)}
	}
}

// mergeable says whether a symbol that is piece id takes part in merges: a NORMAL piece, or a CONTROL piece
// of one character (a character of the text, which SentencePiece merges by its spelling). USER_DEFINED
// pieces are never merged; the other types are never symbols.
func (m *modelProto) mergeable(id int) bool {
	p := m.pieces[id]
	return p.typ == pieceNormal || (p.typ == pieceControl && utf8.RuneCountInString(p.text) == 1)
}

// spmNormalizer is SentencePiece's normalizer with the identity rule (no character map), as LLaMA's
// tokenizer.model has it: with removeExtra, spaces are dropped at both ends and runs of them collapsed; the
// dummy prefix puts a space before non-empty text (even text that starts with one: " a" is "▁▁a"); with
// escape, spaces become "▁".
type spmNormalizer struct{ dummyPrefix, removeExtra, escape bool }

func (n spmNormalizer) normalize(s string) string {
	if n.removeExtra {
		s = collapseSpaces(strings.TrimLeft(s, " "))
	}
	if s == "" {
		return s
	}
	if n.dummyPrefix {
		s = " " + s
	}
	if n.escape {
		s = strings.ReplaceAll(s, " ", "▁")
	}
	if n.removeExtra { // SentencePiece trims the space symbol at the end of its output, "▁" from the text too
		s = trimSpaceSymbols(s, n.escape)
	}
	return s
}

// collapseSpaces replaces each run of spaces with one.
func collapseSpaces(s string) string {
	if !strings.Contains(s, "  ") {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' || i == 0 || s[i-1] != ' ' {
			sb.WriteByte(s[i])
		}
	}
	return sb.String()
}

// trimSpaceSymbols removes the space symbols at the end of s: "▁" when spaces are escaped, else " ".
func trimSpaceSymbols(s string, escape bool) string {
	sym := " "
	if escape {
		sym = "▁"
	}
	for strings.HasSuffix(s, sym) {
		s = s[:len(s)-len(sym)]
	}
	return s
}

// decoder is what Hugging Face's LlamaConverter writes into tokenizer.json for such a model: "▁" back to
// spaces, byte tokens back to text, and the dummy prefix's space removed.
func (n spmNormalizer) decoder() decoder {
	var seq decoderSeq
	if n.escape {
		seq = append(seq, replaceDec{old: "▁", new: " "})
	}
	seq = append(seq, byteFallbackDec{}, fuseDec{})
	if n.dummyPrefix {
		seq = append(seq, stripDec{content: " ", start: 1})
	}
	return seq
}
