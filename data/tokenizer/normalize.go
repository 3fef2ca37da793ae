package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// normalizer rewrites a piece of text before it is split into words (tokenizer.json "normalizer").
type normalizer interface {
	normalize(s string) string
}

type normalizerSeq []normalizer

func (n normalizerSeq) normalize(s string) string {
	for _, x := range n {
		s = x.normalize(s)
	}
	return s
}

// prependNorm puts a prefix before non-empty text: LLaMA's dummy "▁".
type prependNorm string

func (p prependNorm) normalize(s string) string {
	if s == "" {
		return s
	}
	return string(p) + s
}

// replaceNorm replaces every occurrence of a literal string.
type replaceNorm struct{ old, new string }

func (r replaceNorm) normalize(s string) string { return strings.ReplaceAll(s, r.old, r.new) }

type lowercaseNorm struct{}

func (lowercaseNorm) normalize(s string) string { return strings.ToLower(s) }

// stripNorm trims whitespace on the chosen sides.
type stripNorm struct{ left, right bool }

func (n stripNorm) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

func buildNormalizer(raw json.RawMessage, depth int) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, "normalizer", depth)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		seq := make(normalizerSeq, 0, len(c.Normalizers))
		for _, r := range c.Normalizers {
			n, err := buildNormalizer(r, depth+1)
			if err != nil {
				return nil, err
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return seq, nil
	case "Prepend":
		return prependNorm(c.Prepend), nil
	case "Replace":
		return buildReplace(c, "normalizer")
	case "Lowercase":
		return lowercaseNorm{}, nil
	case "Strip":
		return stripNorm{left: c.Left == nil || *c.Left, right: c.Right == nil || *c.Right}, nil
	}
	return nil, fmt.Errorf("%w: normalizer %q", ErrUnsupported, c.Type)
}

// buildReplace reads a Replace normalizer or decoder; only literal-string patterns are supported.
func buildReplace(c *componentJSON, what string) (replaceNorm, error) {
	if c.Pattern.String == nil {
		return replaceNorm{}, fmt.Errorf("%w: %s Replace with a regex pattern", ErrUnsupported, what)
	}
	var content string
	if err := json.Unmarshal(c.Content, &content); err != nil {
		return replaceNorm{}, fmt.Errorf("%w: %s Replace content: %v", ErrFormat, what, err)
	}
	if *c.Pattern.String == "" {
		return replaceNorm{}, fmt.Errorf("%w: %s Replace with an empty pattern", ErrFormat, what)
	}
	return replaceNorm{old: *c.Pattern.String, new: content}, nil
}

// preTokenizer splits normalized text into words that the model encodes one by one. first says whether the
// text begins the input (for Metaspace's prepend_scheme "first").
type preTokenizer interface {
	split(s string, first bool) []string
}

type preSeq []preTokenizer

func (p preSeq) split(s string, first bool) []string {
	words := []string{s}
	for _, x := range p {
		var next []string
		for i, w := range words {
			next = append(next, x.split(w, first && i == 0)...)
		}
		words = next
	}
	return words
}

// metaspace is Hugging Face's Metaspace pre-tokenizer: spaces become the replacement, which is prepended
// according to the scheme unless the text already starts with it, then the text is cut before each
// replacement when split is set.
type metaspace struct {
	repl    string
	prepend string // "always", "first" or "never"
	cut     bool
}

func (m metaspace) split(s string, first bool) []string {
	s = strings.ReplaceAll(s, " ", m.repl)
	if m.prepend == "always" || (m.prepend == "first" && first) {
		if s != "" && !strings.HasPrefix(s, m.repl) {
			s = m.repl + s
		}
	}
	if !m.cut {
		return []string{s}
	}
	var words []string
	for s != "" {
		i := strings.Index(s[1:], m.repl) // the next cut after this word's first byte
		if i < 0 {
			break
		}
		words = append(words, s[:i+1])
		s = s[i+1:]
	}
	if s != "" {
		words = append(words, s)
	}
	return words
}

func buildMetaspace(c *componentJSON) (metaspace, error) {
	m := metaspace{repl: c.Replacement, prepend: c.PrependScheme, cut: c.Split == nil || *c.Split}
	if utf8.RuneCountInString(m.repl) != 1 {
		return m, fmt.Errorf("%w: Metaspace replacement %q is not one character", ErrFormat, m.repl)
	}
	if m.prepend == "" { // files older than prepend_scheme say add_prefix_space
		m.prepend = "always"
		if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			m.prepend = "never"
		}
	}
	if m.prepend != "always" && m.prepend != "first" && m.prepend != "never" {
		return m, fmt.Errorf("%w: Metaspace prepend_scheme %q", ErrUnsupported, m.prepend)
	}
	return m, nil
}

// charClass sorts runes for the Whitespace pre-tokenizer (\w+|[^\w\s]+).
func charClass(r rune) int {
	switch {
	case unicode.IsSpace(r):
		return 0
	case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || unicode.Is(unicode.Pc, r):
		return 1
	}
	return 2
}

// whitespace is Hugging Face's Whitespace pre-tokenizer: runs of word characters, runs of other non-space
// characters; spaces are dropped. With onlySpace (WhitespaceSplit) it only cuts at spaces.
type whitespace struct{ onlySpace bool }

func (w whitespace) split(s string, _ bool) []string {
	var words []string
	start, prev := -1, 0
	for i, r := range s {
		c := charClass(r)
		if w.onlySpace && c == 2 {
			c = 1
		}
		if start >= 0 && c != prev {
			words = append(words, s[start:i])
			start = -1
		}
		if start < 0 && c != 0 {
			start = i
		}
		prev = c
	}
	if start >= 0 {
		words = append(words, s[start:])
	}
	return words
}

func buildPreTokenizer(raw json.RawMessage, depth int) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, "pre_tokenizer", depth)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		seq := make(preSeq, 0, len(c.PreTokenizers))
		for _, r := range c.PreTokenizers {
			p, err := buildPreTokenizer(r, depth+1)
			if err != nil {
				return nil, err
			}
			if p != nil {
				seq = append(seq, p)
			}
		}
		return seq, nil
	case "Metaspace":
		return buildMetaspace(c)
	case "Whitespace":
		return whitespace{}, nil
	case "WhitespaceSplit":
		return whitespace{onlySpace: true}, nil
	}
	return nil, fmt.Errorf("%w: pre_tokenizer %q", ErrUnsupported, c.Type)
}
