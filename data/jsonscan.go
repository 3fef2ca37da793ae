package data

import (
	"errors"
	"fmt"
	"io"
)

// valueScanner splits a stream of JSON text into its top-level values (the records of a data file) with
// bounded memory: one chunk of the stream, plus the bytes of the current value while it is no longer than
// limit. A longer value is skipped while it is read, and only its offsets are kept.
//
// It is written here rather than taken from a library because encoding/json's Decoder buffers each whole
// value before decoding it (Decode, and Token for a string): a 300 MB record cost 300 MB and more before
// anything could refuse it, and neither the standard library nor a module of go.mod finds where a value
// ends without holding it. The scanner follows only what delimits a value (strings with their escapes,
// the nesting of objects and arrays, the grammar of numbers and literals, which end where encoding/json
// ends them); the syntax inside a value is left to encoding/json, which decodes every value within the
// limit. A value past the limit is never validated beyond its delimiters.
type valueScanner struct {
	r      io.Reader
	buf    []byte // the current chunk; buf[pos:n] is not consumed yet
	pos, n int
	base   int64 // offset of buf[0] in the stream
	err    error // what ended the stream: io.EOF, or a read error
	limit  int64
	val    []byte // bytes of the current value moved out of earlier chunks
	mark   int    // start in buf of the current value's bytes not in val yet; -1: not recording
}

// scanChunk is the size of the scanner's read buffer.
const scanChunk = 256 << 10

// span is one top-level value: its byte range, and its bytes when it is no longer than the limit.
type span struct {
	start, end int64
	data       []byte // nil when over; valid until the scanner reads on
	over       bool   // end−start > limit: skipped unread
}

func newValueScanner(r io.Reader, limit int64) *valueScanner {
	return &valueScanner{r: r, buf: make([]byte, scanChunk), limit: limit, mark: -1}
}

// offset is the stream offset of the next byte.
func (s *valueScanner) offset() int64 { return s.base + int64(s.pos) }

// fill makes sure an unconsumed byte is buffered, reading the next chunk when needed (and moving the
// recorded part of the current value out of the old one). It is false at the end of the stream.
func (s *valueScanner) fill() bool {
	if s.pos < s.n {
		return true
	}
	if s.err != nil {
		return false
	}
	s.save()
	s.base += int64(s.n)
	s.pos = 0
	s.n, s.err = io.ReadAtLeast(s.r, s.buf, 1)
	return s.err == nil
}

// save moves buf[mark:n] into val, or stops recording when the value grows past the limit.
func (s *valueScanner) save() {
	if s.mark < 0 {
		return
	}
	if int64(len(s.val)+s.n-s.mark) > s.limit {
		s.mark, s.val = -1, s.val[:0]
		return
	}
	s.val = append(s.val, s.buf[s.mark:s.n]...)
	s.mark = 0
}

// endErr is the error of a value cut short by the end of the stream.
func (s *valueScanner) endErr() error {
	if s.err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return s.err
}

// skipSpace moves past white space and returns the next byte, unconsumed; false at the end of the stream.
func (s *valueScanner) skipSpace() (byte, bool) {
	for s.fill() {
		for ; s.pos < s.n; s.pos++ {
			if c := s.buf[s.pos]; !isSpace(c) {
				return c, true
			}
		}
	}
	return 0, false
}

// value consumes the value that starts at the next byte (not a space).
func (s *valueScanner) value() (span, error) {
	v := span{start: s.offset()}
	s.mark, s.val = s.pos, s.val[:0]
	defer func() { s.mark = -1 }()
	if err := s.skipValue(); err != nil {
		return v, err
	}
	v.end = s.offset()
	if v.over = v.end-v.start > s.limit; v.over {
		return v, nil
	}
	v.data = s.buf[s.mark:s.pos]
	if len(s.val) > 0 {
		v.data = append(s.val, v.data...)
	}
	return v, nil
}

// skipValue moves past one value, dispatching on its first byte.
func (s *valueScanner) skipValue() error {
	switch c := s.buf[s.pos]; c {
	case '{', '[', '"':
		return s.skipNested()
	case 't':
		return s.skipWord("true")
	case 'f':
		return s.skipWord("false")
	case 'n':
		return s.skipWord("null")
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return s.skipNumber()
	default:
		return fmt.Errorf("invalid character %q looking for beginning of value", c)
	}
}

// skipNested moves past a string, an object or an array.
func (s *valueScanner) skipNested() error {
	var st nesting
	for s.fill() {
		for i := s.pos; i < s.n; i++ {
			if st.inStr && !st.esc {
				i += plainRun(s.buf[i:s.n]) // the bulk of JSON text: string bytes with nothing to track
				if i == s.n {
					break
				}
			}
			if st.step(s.buf[i]) {
				s.pos = i + 1
				return nil
			}
		}
		s.pos = s.n
	}
	return s.endErr()
}

// plainRun is the length of the run of b before its first '"' or '\\'.
func plainRun(b []byte) int {
	for i, c := range b {
		if c == '"' || c == '\\' {
			return i
		}
	}
	return len(b)
}

// nesting is the state of skipNested: the depth of objects and arrays, and whether the scan is in a string
// or right after its backslash.
type nesting struct {
	depth      int
	inStr, esc bool
}

// step moves the state over byte c and reports whether c ends the value.
func (n *nesting) step(c byte) bool {
	switch {
	case n.esc:
		n.esc = false
	case n.inStr:
		n.esc, n.inStr = c == '\\', c != '"'
		return !n.inStr && n.depth == 0
	case c == '"':
		n.inStr = true
	case c == '{' || c == '[':
		n.depth++
	case c == '}' || c == ']':
		n.depth--
		return n.depth == 0
	}
	return false
}

// skipWord moves past the literal w (true, false, null).
func (s *valueScanner) skipWord(w string) error {
	for i := range len(w) {
		if !s.fill() {
			return s.endErr()
		}
		if c := s.buf[s.pos]; c != w[i] {
			return fmt.Errorf("invalid character %q in literal %s (expecting %q)", c, w, w[i])
		}
		s.pos++
	}
	return nil
}

// skipNumber moves past a number. Like encoding/json it ends the number at the first byte that cannot
// continue it ("01" is two values), which must leave it complete.
func (s *valueScanner) skipNumber() error {
	st := numStart
	for s.fill() {
		for ; s.pos < s.n; s.pos++ {
			next := st.step(s.buf[s.pos])
			if next == numEnd {
				return st.complete()
			}
			st = next
		}
	}
	if s.err != io.EOF {
		return s.err
	}
	return st.complete()
}

// numState is the position in the number grammar -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
type numState int

const (
	numEnd   numState = iota // the byte does not continue the number
	numStart                 // before the first byte
	numNeg                   // after '-'
	numZero                  // after a leading 0
	numInt                   // in the integer digits
	numDot                   // after '.'
	numFrac                  // in the fraction digits
	numE                     // after 'e' or 'E'
	numESign                 // after the exponent's sign
	numExp                   // in the exponent digits
)

// step is the state after byte c, numEnd when c does not continue the number.
func (st numState) step(c byte) numState {
	digit := '0' <= c && c <= '9'
	switch st {
	case numStart:
		if c == '-' {
			return numNeg
		}
		fallthrough
	case numNeg:
		if c == '0' {
			return numZero
		}
		if digit {
			return numInt
		}
	case numInt:
		if digit {
			return numInt
		}
		fallthrough
	case numZero:
		return st.afterInt(c)
	case numDot, numFrac:
		if digit {
			return numFrac
		}
		if st == numFrac {
			return st.afterInt(c)
		}
	case numE:
		if c == '+' || c == '-' {
			return numESign
		}
		fallthrough
	case numESign, numExp:
		if digit {
			return numExp
		}
	}
	return numEnd
}

// afterInt is the state after c following the integer (or fraction) digits: '.' (integer only) or an
// exponent, else the end.
func (st numState) afterInt(c byte) numState {
	switch {
	case c == '.' && st != numFrac:
		return numDot
	case c == 'e' || c == 'E':
		return numE
	}
	return numEnd
}

// complete is nil when the number may end in state st.
func (st numState) complete() error {
	if st == numZero || st == numInt || st == numFrac || st == numExp {
		return nil
	}
	return errors.New("incomplete number")
}
