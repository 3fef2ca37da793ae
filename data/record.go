package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/flextrain/flextrain/internal/fileio"
)

// ErrMalformedJSON is returned (wrapped, with the file and the byte offset) when the data file is not a
// JSON array of records nor JSON Lines. Callers distinguish it from I/O errors with errors.Is.
var ErrMalformedJSON = errors.New("data: malformed JSON")

// Record is one element of a LLaVA instruction file: {"id", "image"?, "conversations"}. A record without
// an image is a text-only sample.
type Record struct {
	ID            flexString `json:"id"`
	Image         string     `json:"image,omitempty"`
	Conversations []Turn     `json:"conversations"`
	// Tags name what the image shows, one value per key (as {"color": "red", "object": "sign", "text": "K"}):
	// the labels of the vision tower's tag pretraining (`flextrain pretrain-vision`). A flextrain extension
	// of the LLaVA format, which other tools ignore; absent in ordinary LLaVA data.
	Tags map[string]string `json:"tags,omitempty"`
	// Box is the image region the question is about, [x0, y0, x1, y1] in the image's pixels (x1 and y1
	// exclusive), as the synthetic set writes it: the `oracle` selection strategy selects the HR cells it
	// covers. A flextrain extension, ignored by other tools; anything but four numbers selects nothing.
	Box []int `json:"box,omitempty"`
}

// flexString accepts a JSON string or number, because some LLaVA-format files write numeric ids.
type flexString string

// UnmarshalJSON keeps a string as is and a number as its literal text.
func (s *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, (*string)(s))
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		// A type error (not a syntax error) so that the record counts as malformed, not the file.
		return &json.UnmarshalTypeError{Value: string(b), Type: reflect.TypeFor[string](), Field: "id"}
	}
	*s = flexString(n)
	return nil
}

// ErrRecordTooLarge is the cause of a bad sample whose record is longer than Options.MaxRecordBytes: it
// was skipped by the index pass without being held in memory, and is never decoded nor tokenised.
var ErrRecordTooLarge = errors.New("data: record too large")

// entry locates one record in the data file and caches what ordering needs.
type entry struct {
	start, end int64 // byte range of the record's JSON value
	words      int32 // LLaVA's modality length: words of all turns, +128 with an image
	image      bool
	malformed  bool // valid JSON of the wrong shape: a bad sample, found again when the record is loaded
	tooLarge   bool // longer than the index's limit: a bad sample, never read again
}

// index is one streaming pass over the data file: where each record lies, never the records themselves.
type index struct {
	path    string
	limit   int64 // records longer than this many bytes are only located
	entries []entry
}

// buildIndex reads path once (a regular file only: a FIFO or a device fails at once), as a JSON array or
// as JSON Lines (decided by the first non-space byte). Records longer than limit bytes are skipped while
// reading, with bounded memory, and marked tooLarge; the others are decoded for their modality length.
func buildIndex(path string, limit int64) (*index, error) {
	f, err := fileio.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: open %s: %w", path, err)
	}
	defer f.Close()
	ix := &index{path: path, limit: limit}
	if err := ix.scan(newValueScanner(f, limit)); err != nil {
		return nil, fmt.Errorf("data: read %s: %w", path, err)
	}
	return ix, nil
}

// scan fills ix.entries from s.
func (ix *index) scan(s *valueScanner) error {
	first, err := firstByte(s)
	if err != nil {
		return err
	}
	switch first {
	case '[':
		return ix.scanArray(s)
	case '{':
		return ix.scanLines(s)
	default:
		return fmt.Errorf("%w at byte 0: want a JSON array or JSON Lines, got %q", ErrMalformedJSON, first)
	}
}

// maxLeadingSpace bounds the white space before the first value.
const maxLeadingSpace = 1 << 20

// firstByte finds the first non-space byte, unconsumed; an empty file is an error.
func firstByte(s *valueScanner) (byte, error) {
	c, ok := s.skipSpace()
	switch {
	case s.offset() >= maxLeadingSpace:
		return 0, fmt.Errorf("%w: only white space in the first %d bytes", ErrMalformedJSON, maxLeadingSpace)
	case ok:
		return c, nil
	case s.err == io.EOF:
		return 0, fmt.Errorf("%w: empty file", ErrMalformedJSON)
	}
	return 0, s.err
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// scanArray walks `[ record, record, … ]`, then white space to the end. Errors are reported at the offsets
// encoding/json's Decoder gave: a value's error where the value is due (after its comma), a missing comma
// where the next value starts, an early end after the last complete token.
func (ix *index) scanArray(s *valueScanner) error {
	s.pos++ // the '[' that scan saw
	from := s.offset()
	c, ok := s.skipSpace()
	if !ok {
		return malformedAt(s, from, io.ErrUnexpectedEOF)
	}
	if c == ']' {
		s.pos++
		return onlySpaceLeft(s)
	}
	for from = s.offset(); from >= 0; {
		if err := ix.element(s, from); err != nil {
			return err
		}
		var err error
		if from, err = nextElement(s); err != nil {
			return err
		}
	}
	return onlySpaceLeft(s)
}

// nextElement moves past what follows an array element: a comma and the white space up to the next value,
// whose offset is due right after the comma; or the closing ']', and then -1.
func nextElement(s *valueScanner) (int64, error) {
	end := s.offset()
	c, ok := s.skipSpace()
	switch {
	case !ok:
		return 0, malformedAt(s, end, io.ErrUnexpectedEOF)
	case c == ']':
		s.pos++
		return -1, nil
	case c != ',':
		return 0, malformedAt(s, s.offset(), errors.New("expected comma after array element"))
	}
	s.pos++
	from := s.offset()
	if _, ok := s.skipSpace(); !ok {
		return 0, malformedAt(s, from, io.ErrUnexpectedEOF)
	}
	return from, nil
}

// onlySpaceLeft refuses anything but white space after the closing ].
func onlySpaceLeft(s *valueScanner) error {
	if _, ok := s.skipSpace(); ok {
		return fmt.Errorf("%w at byte %d: data after the closing ]", ErrMalformedJSON, s.offset())
	}
	if s.err != io.EOF {
		return s.err
	}
	return nil
}

// scanLines walks one record per line (any white space between values is accepted).
func (ix *index) scanLines(s *valueScanner) error {
	for {
		if _, ok := s.skipSpace(); !ok {
			if s.err != io.EOF {
				return s.err
			}
			return nil
		}
		if err := ix.element(s, s.offset()); err != nil {
			return err
		}
	}
}

// element indexes the value at the scanner: decoded as a Record when within the limit (a value of the
// wrong shape is kept as a malformed entry, a bad sample), else only located (ordering then sees a
// text-only record of length 1). Broken JSON syntax stops the scan, reported at from.
func (ix *index) element(s *valueScanner, from int64) error {
	v, err := s.value()
	if err != nil {
		return malformedAt(s, from, err)
	}
	e := entry{start: v.start, end: v.end, tooLarge: v.over, words: 1}
	if !v.over {
		var rec Record
		err := json.Unmarshal(v.data, &rec)
		var typeErr *json.UnmarshalTypeError
		if err != nil && !errors.As(err, &typeErr) {
			return malformedAt(s, from, err)
		}
		e.image, e.malformed, e.words = rec.Image != "", err != nil, modalityLength(rec)
	}
	ix.entries = append(ix.entries, e)
	return nil
}

// malformedAt wraps a syntax error with ErrMalformedJSON and the byte offset of the value that failed; a
// read error is returned as it is.
func malformedAt(s *valueScanner, off int64, err error) error {
	if s.err != nil && s.err != io.EOF {
		return s.err
	}
	return fmt.Errorf("%w at byte %d (the value starting there): %v", ErrMalformedJSON, off, err)
}

// modalityLength is LLaVA's length estimate for group_by_modality_length: the word count of all turns,
// plus 128 for the image. It is at least 1 so no record has length zero.
func modalityLength(rec Record) int32 {
	n := 0
	for _, t := range rec.Conversations {
		n += len(strings.Fields(t.Value))
	}
	if rec.Image != "" {
		n += 128
	}
	return int32(max(n, 1))
}

// readRecord reads record i back from the data file through f (safe for concurrent use: ReadAt). A record
// that is a bad sample comes back as far as it decoded, with bad set: a *json.UnmarshalTypeError for the
// wrong shape, or ErrRecordTooLarge, for which nothing is read. err is an I/O or syntax error (the file
// changed since it was indexed) and stops the loader.
func (ix *index) readRecord(f io.ReaderAt, i int) (rec Record, bad, err error) {
	e := ix.entries[i]
	if e.tooLarge {
		return rec, fmt.Errorf("%w: %d bytes at byte %d; the limit is %d (max_record_bytes)", ErrRecordTooLarge, e.end-e.start, e.start, ix.limit), nil
	}
	buf := make([]byte, e.end-e.start)
	if _, err := f.ReadAt(buf, e.start); err != nil {
		return rec, nil, fmt.Errorf("data: read %s record %d at byte %d: %w", ix.path, i, e.start, err)
	}
	err = json.Unmarshal(buf, &rec)
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return rec, err, nil
	}
	if err != nil {
		return rec, nil, fmt.Errorf("data: read %s record %d at byte %d (changed since indexed?): %w", ix.path, i, e.start, err)
	}
	return rec, nil, nil
}
