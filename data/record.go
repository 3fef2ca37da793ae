package data

import (
	"bufio"
	"bytes"
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

// entry locates one record in the data file and caches what ordering needs.
type entry struct {
	start, end int64 // byte range of the record, possibly with a leading ',' and spaces
	words      int32 // LLaVA's modality length: words of all turns, +128 with an image
	image      bool
	malformed  bool // valid JSON of the wrong shape: a bad sample, found again when the record is loaded
}

// index is one streaming pass over the data file: where each record lies, never the records themselves.
type index struct {
	path    string
	entries []entry
}

// buildIndex reads path once (a regular file only: a FIFO or a device fails at once), as a JSON array or as JSON Lines (decided by the first non-space byte).
func buildIndex(path string) (*index, error) {
	f, err := fileio.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: open %s: %w", path, err)
	}
	defer f.Close()
	ix := &index{path: path}
	if err := ix.scan(f); err != nil {
		return nil, fmt.Errorf("data: read %s: %w", path, err)
	}
	return ix, nil
}

// scan fills ix.entries from r.
func (ix *index) scan(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	first, err := firstByte(br)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(br)
	switch first {
	case '[':
		return ix.scanArray(dec)
	case '{':
		return ix.scanLines(dec)
	default:
		return fmt.Errorf("%w at byte 0: want a JSON array or JSON Lines, got %q", ErrMalformedJSON, first)
	}
}

// firstByte peeks the first non-space byte; an empty file is an error.
func firstByte(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if err != nil {
			if err == io.EOF {
				return 0, fmt.Errorf("%w: empty file", ErrMalformedJSON)
			}
			return 0, err
		}
		if c := b[n-1]; !isSpace(c) {
			return c, nil
		}
		if n >= br.Size() {
			return 0, fmt.Errorf("%w: only white space in the first %d bytes", ErrMalformedJSON, n)
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// scanArray walks `[ record, record, … ]` with Token/More/Decode, one element at a time.
func (ix *index) scanArray(dec *json.Decoder) error {
	if _, err := dec.Token(); err != nil {
		return malformed(dec, err)
	}
	for dec.More() {
		if err := ix.decodeOne(dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return malformed(dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w at byte %d: data after the closing ]", ErrMalformedJSON, dec.InputOffset())
	}
	return nil
}

// scanLines walks one record per line (any white space between values is accepted).
func (ix *index) scanLines(dec *json.Decoder) error {
	for dec.More() {
		if err := ix.decodeOne(dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed(dec, err)
	}
	return nil
}

// decodeOne decodes the next value as a Record and appends its entry. A value of the wrong shape is kept as
// a malformed entry (a bad sample); broken JSON syntax stops the scan.
func (ix *index) decodeOne(dec *json.Decoder) error {
	start := dec.InputOffset()
	var rec Record
	err := dec.Decode(&rec)
	var typeErr *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typeErr) {
		return malformed(dec, err)
	}
	e := entry{start: start, end: dec.InputOffset(), image: rec.Image != "", malformed: err != nil}
	e.words = modalityLength(rec)
	ix.entries = append(ix.entries, e)
	return nil
}

// malformed wraps a decoder error with ErrMalformedJSON and the byte offset of the value that failed
// (InputOffset; a json.Decoder's SyntaxError.Offset is not an offset into the file).
func malformed(dec *json.Decoder, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w at byte %d (the value starting there): %v", ErrMalformedJSON, dec.InputOffset(), err)
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
// of the wrong shape comes back as far as it decoded, with shapeErr set; err is an I/O or syntax error (the
// file changed since it was indexed) and stops the loader.
func (ix *index) readRecord(f io.ReaderAt, i int) (rec Record, shapeErr, err error) {
	e := ix.entries[i]
	buf := make([]byte, e.end-e.start)
	if _, err := f.ReadAt(buf, e.start); err != nil {
		return rec, nil, fmt.Errorf("data: read %s record %d at byte %d: %w", ix.path, i, e.start, err)
	}
	buf = bytes.TrimLeft(buf, " \t\r\n,")
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
