package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder rewrites the list of token strings on the way back to text (tokenizer.json "decoder"); the result
// is concatenated.
type decoder interface {
	decode(toks []string) []string
}

type decoderSeq []decoder

func (d decoderSeq) decode(toks []string) []string {
	for _, x := range d {
		toks = x.decode(toks)
	}
	return toks
}

type replaceDec replaceNorm

func (r replaceDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = strings.ReplaceAll(t, r.old, r.new)
	}
	return out
}

// byteFallbackDec turns runs of <0xXX> tokens back into text; bytes that are not valid UTF-8 become U+FFFD,
// one per byte, as Hugging Face does.
type byteFallbackDec struct{}

func (byteFallbackDec) decode(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			out = append(out, strings.Repeat("\uFFFD", len(pending)))
		}
		pending = pending[:0]
	}
	for _, t := range toks {
		if b, ok := byteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, t)
	}
	flush()
	return out
}

// byteToken parses a byte-fallback token "<0xXX>".
func byteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(t[3:5], 16, 8)
	return byte(v), err == nil
}

type fuseDec struct{}

func (fuseDec) decode(toks []string) []string { return []string{strings.Join(toks, "")} }

// stripDec removes up to start leading and stop trailing copies of content from every token.
type stripDec struct {
	content     string
	start, stop int
}

func (s stripDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		for n := 0; n < s.start && strings.HasPrefix(t, s.content); n++ {
			t = t[len(s.content):]
		}
		for n := 0; n < s.stop && strings.HasSuffix(t, s.content); n++ {
			t = t[:len(t)-len(s.content)]
		}
		out[i] = t
	}
	return out
}

// metaspaceDec turns the replacement back into spaces; in the first token it is dropped instead when the
// pre-tokenizer prepends one.
type metaspaceDec struct {
	repl     string
	dropHead bool
}

func (m metaspaceDec) decode(toks []string) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		if i == 0 && m.dropHead {
			out[i] = strings.ReplaceAll(t, m.repl, "")
		} else {
			out[i] = strings.ReplaceAll(t, m.repl, " ")
		}
	}
	return out
}

func buildDecoder(raw json.RawMessage, depth int) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	c, err := parseComponent(raw, "decoder", depth)
	if err != nil {
		return nil, err
	}
	switch c.Type {
	case "Sequence":
		return buildDecoderSeq(c.Decoders, depth+1)
	case "Replace":
		r, err := buildReplace(c, "decoder")
		return replaceDec(r), err
	case "ByteFallback":
		return byteFallbackDec{}, nil
	case "Fuse":
		return fuseDec{}, nil
	case "Strip":
		var content string
		if err := json.Unmarshal(c.Content, &content); err != nil || utf8.RuneCountInString(content) != 1 {
			return nil, fmt.Errorf("%w: decoder Strip content %s", ErrFormat, c.Content)
		}
		return stripDec{content: content, start: c.Start, stop: c.Stop}, nil
	case "Metaspace":
		m, err := buildMetaspace(c)
		return metaspaceDec{repl: m.repl, dropHead: m.prepend != "never"}, err
	}
	return nil, fmt.Errorf("%w: decoder %q", ErrUnsupported, c.Type)
}

func buildDecoderSeq(raws []json.RawMessage, depth int) (decoder, error) {
	seq := make(decoderSeq, 0, len(raws))
	for _, r := range raws {
		d, err := buildDecoder(r, depth)
		if err != nil {
			return nil, err
		}
		if d != nil {
			seq = append(seq, d)
		}
	}
	return seq, nil
}
