package data

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// scanAll splits in into its top-level values with a scanner reading chunk bytes at a time; a value over
// limit comes back as "over:" and its length.
func scanAll(in string, limit int64, chunk int) ([]string, error) {
	s := newValueScanner(strings.NewReader(in), limit)
	s.buf = make([]byte, chunk)
	var out []string
	for {
		if _, ok := s.skipSpace(); !ok {
			return out, nil
		}
		v, err := s.value()
		if err != nil {
			return out, err
		}
		if got := in[v.start:v.end]; v.over {
			out = append(out, fmt.Sprintf("over:%d", len(got)))
		} else if string(v.data) != got {
			return out, fmt.Errorf("data %q, range %q", v.data, got)
		} else {
			out = append(out, got)
		}
	}
}

func TestValueScanner(t *testing.T) {
	tests := []struct {
		name, in string
		limit    int64
		want     []string
		err      bool
	}{
		{"strings and nesting", `{"a":"}]\"{"} [1,{"b":"\\\""}] "x\"y" "\\"`, 100,
			[]string{`{"a":"}]\"{"}`, `[1,{"b":"\\\""}]`, `"x\"y"`, `"\\"`}, false},
		{"numbers", "0 -12.5e+3 1E9 -0.0 01 2.5.1", 100, []string{"0", "-12.5e+3", "1E9", "-0.0", "0", "1", "2.5"}, true},
		{"glued values", `1true"s"{}[]null`, 100, []string{"1", "true", `"s"`, "{}", "[]", "null"}, false},
		{"over the limit", `{"a":1} 123456 "abcd" [1] truefalse`, 5, []string{"over:7", "over:6", "over:6", "[1]", "true", "false"}, false},
		{"unterminated string", `{} "abc`, 100, []string{"{}"}, true},
		{"unclosed object", `{"a":[1,2]`, 100, nil, true},
		{"incomplete number", `1.`, 100, nil, true},
		{"lone minus", `-`, 100, nil, true},
		{"incomplete exponent", `1e+ `, 100, nil, true},
		{"short literal", `tru`, 100, nil, true},
		{"bad literal", `nul1`, 100, nil, true},
		{"bad start", `{} ]`, 100, []string{"{}"}, true},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 2, 3, 7, scanChunk} {
			t.Run(fmt.Sprintf("%s/chunk %d", tt.name, chunk), func(t *testing.T) {
				got, err := scanAll(tt.in, tt.limit, chunk)
				if fmt.Sprint(got) != fmt.Sprint(tt.want) || (err != nil) != tt.err {
					t.Errorf("got %q, %v; want %q, error %v", got, err, tt.want, tt.err)
				}
			})
		}
	}
}

// decoderIndex is the index pass as it was written with encoding/json's Decoder, before records were
// bounded: the reference that the scanner-based index must agree with. Its entries start at the comma
// before a value; the scanner's at the value.
func decoderIndex(b []byte) ([]entry, error) {
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty file", ErrMalformedJSON)
	}
	d := &oldIndex{dec: json.NewDecoder(bytes.NewReader(b))}
	switch trimmed[0] {
	case '[':
		return d.entries, d.array()
	case '{':
		return d.entries, d.lines()
	}
	return nil, fmt.Errorf("%w at byte 0: want a JSON array or JSON Lines, got %q", ErrMalformedJSON, trimmed[0])
}

// oldIndex is the state of decoderIndex.
type oldIndex struct {
	dec     *json.Decoder
	entries []entry
}

func (d *oldIndex) array() error {
	if _, err := d.dec.Token(); err != nil {
		return oldMalformed(d.dec, err)
	}
	if err := d.values(); err != nil {
		return err
	}
	if _, err := d.dec.Token(); err != nil {
		return oldMalformed(d.dec, err)
	}
	if _, err := d.dec.Token(); err != io.EOF {
		return fmt.Errorf("%w at byte %d: data after the closing ]", ErrMalformedJSON, d.dec.InputOffset())
	}
	return nil
}

func (d *oldIndex) lines() error {
	if err := d.values(); err != nil {
		return err
	}
	if _, err := d.dec.Token(); err != io.EOF {
		return oldMalformed(d.dec, err)
	}
	return nil
}

// values decodes values while the Decoder has more, as records.
func (d *oldIndex) values() error {
	for d.dec.More() {
		start := d.dec.InputOffset()
		var rec Record
		err := d.dec.Decode(&rec)
		var typeErr *json.UnmarshalTypeError
		if err != nil && !errors.As(err, &typeErr) {
			return oldMalformed(d.dec, err)
		}
		d.entries = append(d.entries, entry{start: start, end: d.dec.InputOffset(), image: rec.Image != "", malformed: err != nil, words: modalityLength(rec)})
	}
	return nil
}

func oldMalformed(dec *json.Decoder, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w at byte %d (the value starting there): %v", ErrMalformedJSON, dec.InputOffset(), err)
}

var atByte = regexp.MustCompile(`at byte \d+|empty file`)

// sameIndex compares the scanner-based index of b with decoderIndex: the same error (ErrMalformedJSON at
// the same offset), or the same entries. A value after the closing ] is reported where it starts, where
// the Decoder reported where it ends, when it is valid.
func sameIndex(t *testing.T, dir string, b []byte) {
	t.Helper()
	path := filepath.Join(dir, "same.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ix, err := buildIndex(path, DefaultMaxRecordBytes)
	want, wantErr := decoderIndex(b)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("index of %q: got %v; want %v", b, err, wantErr)
	}
	if err != nil {
		if got, want := atByte.FindString(err.Error()), atByte.FindString(wantErr.Error()); got != want && !strings.Contains(err.Error(), "after the closing ]") {
			t.Fatalf("index of %q: got %v; want %v", b, err, wantErr)
		}
		return
	}
	if len(ix.entries) != len(want) {
		t.Fatalf("index of %q: got %d entries; want %d", b, len(ix.entries), len(want))
	}
	for i, e := range ix.entries {
		w := want[i]
		if string(b[e.start:e.end]) != string(bytes.TrimLeft(b[w.start:w.end], " \t\r\n,")) || e.words != w.words || e.image != w.image || e.malformed != w.malformed || e.tooLarge {
			t.Fatalf("index of %q, entry %d: got %+v; want %+v", b, i, e, w)
		}
	}
}

func TestIndexMatchesDecoder(t *testing.T) {
	dir := t.TempDir()
	for _, in := range indexSeeds {
		sameIndex(t, dir, []byte(in))
	}
}

// indexSeeds are inputs for the index tests and fuzz targets.
var indexSeeds = []string{
	`[{"id":"a","image":"x.jpg","conversations":[{"from":"human","value":"<image>\nq"},{"from":"gpt","value":"a"}]}]`,
	"{\"id\":1}\n{\"id\":\"b\",\"conversations\":[]}\n",
	`[{"id":"a"},{"id":`, `[]`, `[ ]`, `[`, `[  `, ` [{}, {} ] `, `[{},]`, `[,]`, `[{} {}]`, `[{}}`, `[1x]`,
	`[1, "s", true, null, [], {"id": 2.5}]`, `[{"id":"a"}] x`, `[{"id":"a"}] ]`, "{}\n]", "{}\n,", `{}01`,
	`{"id":"é \" ,]["}`, `{"a":"\u00e9\ud83d\ude00"}`, "{\"a\":\"\x01\"}", `{"a":1]`, `[{"a":[}],{"b":1}]`,
	`{"conversations":[{"from":"human","value":"a b c"}],"image":7}`, `{}-`, `{}1e`, "  \n ", "",
}

// FuzzIndexMatchesDecoder checks that the scanner-based index agrees with the Decoder-based one it
// replaced on any input (sameIndex), and that a small limit changes only which entries are too large.
func FuzzIndexMatchesDecoder(f *testing.F) {
	for _, in := range indexSeeds {
		f.Add([]byte(in))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		sameIndex(t, dir, b)
		sameWithLimit(t, filepath.Join(dir, "same.json"), 8)
	})
}

// sameWithLimit indexes path with the default limit and with limit: where the first succeeds, the second
// finds the same entries, too large exactly where longer than limit.
func sameWithLimit(t *testing.T, path string, limit int64) {
	t.Helper()
	big, err := buildIndex(path, DefaultMaxRecordBytes)
	if err != nil {
		return
	}
	small, err := buildIndex(path, limit)
	if err != nil || len(small.entries) != len(big.entries) {
		t.Fatalf("limit %d: got %v, %d entries; want %d entries", limit, err, len(small.entries), len(big.entries))
	}
	for i, e := range small.entries {
		w := big.entries[i]
		if over := w.end-w.start > limit; over {
			w.words, w.image, w.malformed = 1, false, false
		}
		w.tooLarge = w.end-w.start > limit
		if e != w {
			t.Fatalf("limit %d, entry %d: got %+v; want %+v", limit, i, e, w)
		}
	}
}
