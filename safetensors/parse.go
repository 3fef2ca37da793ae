package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
)

// entry is one tensor's header record before it is checked against the data buffer.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end int64
}

// Parse decodes a whole safetensors file held in memory. The tensors' Data alias b (no copy), with their
// capacity cut at their end so that an append cannot overwrite a neighbour.
func Parse(b []byte) (*File, error) {
	f, err := parse(b)
	if err != nil {
		return nil, fmt.Errorf("safetensors: parse: %w", err)
	}
	return f, nil
}

func parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, formatErrorf("file of %d bytes is shorter than the 8-byte header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if err := checkHeaderLen(n, int64(len(b))); err != nil {
		return nil, err
	}
	entries, meta, err := decodeHeader(b[8 : 8+n])
	if err != nil {
		return nil, err
	}
	return assemble(entries, meta, b[8+n:])
}

// checkHeaderLen refuses a header length that is absurd or runs past the end of a file of fileSize bytes,
// before anything is allocated for it.
func checkHeaderLen(n uint64, fileSize int64) error {
	switch {
	case n > MaxHeaderSize:
		return formatErrorf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	case n > uint64(fileSize-8):
		return formatErrorf("header length %d runs past the end of the %d-byte file", n, fileSize)
	case n < 2:
		return formatErrorf("header length %d cannot hold a JSON object", n)
	}
	return nil
}

// decodeHeader walks the header JSON token by token, so that a repeated key is seen (encoding/json would
// silently keep the last one) and no value is decoded into a shape it does not have.
func decodeHeader(hdr []byte) ([]entry, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	var entries []entry
	meta := map[string]string{}
	err := walkObject(dec, "header", func(key string) error {
		if key == metadataKey {
			return decodeMetadata(dec, meta)
		}
		e, err := decodeEntry(dec, key)
		entries = append(entries, e)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, formatErrorf("header: data after the JSON object")
	}
	return entries, meta, nil
}

// walkObject reads one JSON object from dec, calling fn with each key while dec stands before its value;
// fn must consume the value. ctx names the object in errors.
func walkObject(dec *json.Decoder, ctx string, fn func(key string) error) error {
	if err := expectDelim(dec, ctx, '{', "an object"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return formatErrorf("%s: invalid JSON: %v", ctx, err)
		}
		key, _ := tok.(string) // inside an object the decoder yields only string keys
		if seen[key] {
			return formatErrorf("%s: key %q appears twice", ctx, key)
		}
		seen[key] = true
		if err := fn(key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return formatErrorf("%s: invalid JSON: %v", ctx, err)
	}
	return nil
}

// expectDelim reads the next token and requires it to be the delimiter d.
func expectDelim(dec *json.Decoder, ctx string, d json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return formatErrorf("%s: invalid JSON: %v", ctx, err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return formatErrorf("%s: not %s (got %v)", ctx, what, tok)
	}
	return nil
}

// decodeMetadata reads the __metadata__ object into meta, refusing any value that is not a string.
func decodeMetadata(dec *json.Decoder, meta map[string]string) error {
	return walkObject(dec, "metadata", func(key string) error {
		s, err := stringToken(dec, "metadata", key)
		meta[key] = s
		return err
	})
}

// stringToken reads the next token and requires a JSON string. Errors name ctx, followed by key when it is
// not empty; the message is built only then, so that a long object costs no text per key.
func stringToken(dec *json.Decoder, ctx, key string) (string, error) {
	tok, err := dec.Token()
	if s, ok := tok.(string); ok && err == nil {
		return s, nil
	}
	if key != "" {
		ctx = fmt.Sprintf("%s %q", ctx, key)
	}
	if err != nil {
		return "", formatErrorf("%s: invalid JSON: %v", ctx, err)
	}
	return "", formatErrorf("%s: value %v is not a string", ctx, tok)
}

// decodeEntry reads one tensor record {"dtype", "shape", "data_offsets"}, all three required, no others.
func decodeEntry(dec *json.Decoder, name string) (entry, error) {
	e := entry{name: name}
	ctx := fmt.Sprintf("tensor %q", name)
	var offsets []int64
	err := walkObject(dec, ctx, func(key string) (err error) {
		switch key {
		case "dtype":
			var s string
			s, err = stringToken(dec, ctx+" dtype", "")
			e.dtype = DType(s)
		case "shape":
			e.shape, err = intsToken(dec, ctx+" shape")
		case "data_offsets":
			offsets, err = int64sToken(dec, ctx+" data_offsets")
		default:
			err = formatErrorf("%s: unknown field %q", ctx, key)
		}
		return err
	})
	if err != nil {
		return e, err
	}
	return e, e.finish(ctx, offsets)
}

// finish checks what a record can be checked for without the buffer: the dtype, the shape, the offsets' form.
func (e *entry) finish(ctx string, offsets []int64) error {
	switch {
	case e.dtype == "":
		return formatErrorf("%s: missing dtype", ctx)
	case e.dtype.Size() == 0:
		return formatErrorf("%s: unknown dtype %q", ctx, e.dtype)
	case e.shape == nil:
		return formatErrorf("%s: missing shape", ctx)
	case offsets == nil:
		return formatErrorf("%s: missing data_offsets", ctx)
	case len(offsets) != 2:
		return formatErrorf("%s: data_offsets has %d numbers, want 2", ctx, len(offsets))
	case offsets[0] < 0 || offsets[1] < offsets[0]:
		return formatErrorf("%s: data_offsets %v are not an ordered pair of non-negative numbers", ctx, offsets)
	}
	e.begin, e.end = offsets[0], offsets[1]
	return nil
}

// int64sToken reads a JSON array of integers.
func int64sToken(dec *json.Decoder, ctx string) ([]int64, error) {
	if err := expectDelim(dec, ctx, '[', "an array"); err != nil {
		return nil, err
	}
	out := []int64{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, formatErrorf("%s: invalid JSON: %v", ctx, err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, formatErrorf("%s: %v is not a number", ctx, tok)
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			return nil, formatErrorf("%s: %s is not a 64-bit integer", ctx, num)
		}
		out = append(out, v)
	}
	_, err := dec.Token()
	if err != nil {
		return nil, formatErrorf("%s: invalid JSON: %v", ctx, err)
	}
	return out, nil
}

// intsToken reads a shape: an array of non-negative integers that fit an int.
func intsToken(dec *json.Decoder, ctx string) ([]int, error) {
	vs, err := int64sToken(dec, ctx)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(vs))
	for i, v := range vs {
		if v < 0 || v > math.MaxInt {
			return nil, formatErrorf("%s: dimension %d is negative or too large", ctx, v)
		}
		out[i] = int(v)
	}
	return out, nil
}

// assemble checks every record against the data buffer (size, bounds, overlaps) and builds the File.
func assemble(entries []entry, meta map[string]string, buf []byte) (*File, error) {
	f := &File{Metadata: meta, Tensors: make(map[string]Tensor, len(entries))}
	for _, e := range entries {
		if err := e.checkSpan(int64(len(buf))); err != nil {
			return nil, err
		}
		f.Tensors[e.name] = Tensor{DType: e.dtype, Shape: e.shape, Data: buf[e.begin:e.end:e.end]}
	}
	if err := checkOverlaps(entries); err != nil {
		return nil, err
	}
	return f, nil
}

// checkSpan requires the record's byte range to match shape×dtype and to lie inside a buffer of n bytes.
func (e entry) checkSpan(n int64) error {
	ctx := fmt.Sprintf("tensor %q", e.name)
	want, err := byteSize(e.shape, e.dtype.Size())
	if err != nil {
		return formatErrorf("%s: %v", ctx, err)
	}
	if e.end > n {
		return formatErrorf("%s: data_offsets [%d, %d] run past the %d-byte data buffer", ctx, e.begin, e.end, n)
	}
	if got := e.end - e.begin; got != int64(want) {
		return formatErrorf("%s: data_offsets [%d, %d] hold %d bytes, but %s%v needs %d",
			ctx, e.begin, e.end, got, e.dtype, e.shape, want)
	}
	return nil
}

// checkOverlaps refuses two tensors whose (non-empty) byte ranges share a byte.
func checkOverlaps(entries []entry) error {
	sorted := make([]entry, 0, len(entries))
	for _, e := range entries {
		if e.end > e.begin {
			sorted = append(sorted, e)
		}
	}
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].begin < sorted[j].begin })
	for i := 1; i < len(sorted); i++ {
		prev, cur := sorted[i-1], sorted[i]
		if cur.begin < prev.end {
			return formatErrorf("tensor %q: data_offsets [%d, %d] overlap tensor %q [%d, %d]",
				cur.name, cur.begin, cur.end, prev.name, prev.begin, prev.end)
		}
	}
	return nil
}
