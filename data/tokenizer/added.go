package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is a token matched literally in the text before normalization.
type addedToken struct {
	content        string
	id             int
	singleWord     bool
	lstrip, rstrip bool
}

// addedMatcher finds added tokens in text, leftmost first and longest at a position, as Hugging Face's
// added-vocabulary split does.
type addedMatcher struct {
	ids     map[string]int
	byFirst [256][]addedToken // candidates by first byte, longest first
}

// segment is a piece of the input: an added token (id >= 0) or text to encode (id < 0). start is the byte
// offset of text in the input.
type segment struct {
	text  string
	id    int
	start int
}

// newAddedMatcher indexes the added tokens plus <s>, </s>, <unk> when only the vocab has them, so that they are
// always matched as single ids (the slow LlamaTokenizer splits on its special tokens).
func newAddedMatcher(added []AddedToken, vocab map[string]int) *addedMatcher {
	m := &addedMatcher{ids: map[string]int{}}
	var toks []addedToken
	for _, a := range added {
		if _, dup := m.ids[a.Content]; dup {
			continue
		}
		m.ids[a.Content] = a.ID
		toks = append(toks, addedToken{content: a.Content, id: a.ID, singleWord: a.SingleWord, lstrip: a.LStrip, rstrip: a.RStrip})
	}
	for _, s := range []string{"<s>", "</s>", "<unk>"} {
		if id, ok := vocab[s]; ok {
			if _, dup := m.ids[s]; !dup {
				m.ids[s] = id
				toks = append(toks, addedToken{content: s, id: id})
			}
		}
	}
	sort.SliceStable(toks, func(i, j int) bool { return len(toks[i].content) > len(toks[j].content) })
	for _, t := range toks {
		m.byFirst[t.content[0]] = append(m.byFirst[t.content[0]], t)
	}
	return m
}

// split cuts text into added tokens and the text between them; empty text pieces are left out.
func (m *addedMatcher) split(text string) []segment {
	var segs []segment
	start := 0 // start of the pending text piece
	for i := 0; i < len(text); {
		t, ok := m.matchAt(text, i)
		if !ok {
			i++
			continue
		}
		end := i + len(t.content)
		piece := text[start:i]
		if t.lstrip {
			piece = strings.TrimRightFunc(piece, unicode.IsSpace)
		}
		if piece != "" {
			segs = append(segs, segment{text: piece, id: -1, start: start})
		}
		segs = append(segs, segment{id: t.id, start: i})
		if t.rstrip {
			end += len(text[end:]) - len(strings.TrimLeftFunc(text[end:], unicode.IsSpace))
		}
		start, i = end, end
	}
	if start < len(text) {
		segs = append(segs, segment{text: text[start:], id: -1, start: start})
	}
	return segs
}

// matchAt returns the longest added token that starts at byte i of text.
func (m *addedMatcher) matchAt(text string, i int) (addedToken, bool) {
	for _, t := range m.byFirst[text[i]] {
		if strings.HasPrefix(text[i:], t.content) && (!t.singleWord || wordBounded(text, i, i+len(t.content))) {
			return t, true
		}
	}
	return addedToken{}, false
}

// wordBounded says whether text[i:j] is not glued to word characters on either side.
func wordBounded(text string, i, j int) bool {
	if r, _ := utf8.DecodeLastRuneInString(text[:i]); i > 0 && charClass(r) == 1 {
		return false
	}
	if r, _ := utf8.DecodeRuneInString(text[j:]); j < len(text) && charClass(r) == 1 {
		return false
	}
	return true
}
