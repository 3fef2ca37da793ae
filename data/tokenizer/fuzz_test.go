package tokenizer

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks on the LLaMA fixture that Encode never panics or returns an id outside the vocabulary,
// and that Decode inverts Encode (without BOS) for valid UTF-8. Texts with a literal special token or the
// "▁" character are left out of the round trip: SentencePiece cannot tell "▁" from an encoded space.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"grabbed", " grabbed", "\n", " \n", "ax\n####\nboo", "🦙Ꙋ", "  two  spaces  ",
		"\xff\xfe invalid", "a</s>b", "x\x00y", "\r\n\t", "ÿ", "\uFFFD", ""} {
		f.Add(s)
	}
	tok, _ := loadLlama(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, true)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode(%q) has id %d outside [0, %d)", s, id, tok.VocabSize())
			}
		}
		if !utf8.ValidString(s) || hasSpecial(s) || strings.Contains(s, "▁") {
			tok.Decode(ids)
			return
		}
		if got := tok.Decode(tok.Encode(s, false)); got != s {
			t.Errorf("Decode(Encode(%q)) = %q", s, got)
		}
	})
}

// Allocation bound of the loading tests and fuzz targets: decoding a tokenizer.json may allocate at most
// allocPerByte bytes per byte of JSON, plus allocFixed.
//
//   - allocPerByte = 256. encoding/json decodes the vocabulary into a map and the merges into slices of
//     strings, some 20 bytes per byte of JSON (18 measured on the LLaMA tokenizer.json: 1.16 MB → 21
//     MB). Its worst case is an array of tiny elements of the wrong type, such as "added_tokens": [0,0,…]:
//     2 bytes of JSON become a 56-byte element of a slice grown by doubling, plus a type error allocated
//     for each: 131 bytes per byte measured (TestParseAllocation). 256 is twice that. What the bound
//     excludes is allocation that grows with a number written in the file rather than with its size: an
//     id of 2^24 (a 268 MB id table from 53 bytes), or Sequences nested thousands deep (each level
//     decoding its children again: 274 MB from 72 KB).
//   - allocFixed = 1 MiB: what does not grow with the input: the added-token matcher's table, the gzip
//     reader's window and tables, encoding/json's state, the id table's slack (16 KiB).
//
// The gzip path (parseFile) adds the decompressed bytes, in a buffer grown by doubling (at most 3 bytes
// allocated per byte decompressed), so its bound is (allocPerByte+3)·max(compressed, decompressed) +
// allocFixed, where the decompressed size is at most the limit (and at most some 1000 times the
// compressed size, gzip's largest ratio).
const (
	allocPerByte = 256
	allocFixed   = 1 << 20
)

// allocs returns the bytes fn allocated.
func allocs(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// loadSeeds are tokenizer.json texts for the loading fuzz targets: the WordLevel fixture, the tiny BPE of
// parse_test.go, and components of every kind.
func loadSeeds(f *testing.F) [][]byte {
	wordlevel, err := os.ReadFile(filepath.Join("..", "testdata", "tokenizer", "wordlevel", "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	model := `"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0, "b": 1, "ab": 2, "<0x41>": 3, "<s>": 4}, "merges": ["a b"]}`
	seeds := [][]byte{wordlevel, []byte(strings.NewReplacer("%PRE%", "null", "%FUSE%", "true").Replace(tinyBPE))}
	for _, c := range []string{
		`"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}, {"type": "Lowercase"}, {"type": "Strip"}]}`,
		`"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"}, {"type": "Whitespace"}]}`,
		`"decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}, {"type": "Metaspace", "replacement": "▁"}]}`,
		`"added_tokens": [{"id": 5, "content": "</s>", "special": true, "single_word": true, "lstrip": true}]`,
	} {
		seeds = append(seeds, []byte("{"+c+", "+model+"}"))
	}
	return seeds
}

// checkLoaded encodes and decodes a short text with a tokenizer that loaded: no panic, ids in range.
func checkLoaded(t *testing.T, tok *Tokenizer) {
	ids := tok.Encode("ab a</s>b A\n", true)
	for _, id := range ids {
		if id < 0 || id >= tok.VocabSize() {
			t.Fatalf("Encode gave id %d outside [0, %d)", id, tok.VocabSize())
		}
	}
	tok.Decode(ids)
}

// FuzzParse feeds arbitrary bytes to Parse: a Tokenizer or an error, never a panic, and allocation within
// allocPerByte·len + allocFixed.
func FuzzParse(f *testing.F) {
	for _, s := range loadSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tok *Tokenizer
		var err error
		if got, max := allocs(func() { tok, err = Parse(b) }), uint64(allocPerByte*len(b)+allocFixed); got > max {
			t.Fatalf("Parse of %d bytes allocated %d; want at most %d", len(b), got, max)
		}
		if err == nil {
			checkLoaded(t, tok)
		}
	})
}

// FuzzParseFile feeds arbitrary bytes, gzip-compressed or not, to what Load does with a file's bytes
// (parseFile, for a tokenizer.json or a tokenizer.model), within a decompression limit of 1 MiB: a Tokenizer
// or an error, never a panic, and allocation within (allocPerByte+3)·max(len, decompressed len) + allocFixed.
func FuzzParseFile(f *testing.F) {
	for _, s := range append(loadSeeds(f), spmSeeds(f)...) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(s)
		zw.Close()
		f.Add(buf.Bytes())
	}
	f.Add([]byte{0x1f, 0x8b})
	var bomb bytes.Buffer // 2 MiB of zeros: past the limit
	zw := gzip.NewWriter(&bomb)
	zw.Write(make([]byte, 2<<20))
	zw.Close()
	f.Add(bomb.Bytes())
	const limit = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		var tok *Tokenizer
		var err error
		got := allocs(func() { tok, err = parseFile(b, limit) })
		n := max(len(b), inflatedLen(b, limit))
		if max := uint64((allocPerByte+3)*n + allocFixed); got > max {
			t.Fatalf("parseFile of %d bytes (%d decompressed) allocated %d; want at most %d", len(b), n, got, max)
		}
		if err == nil {
			checkLoaded(t, tok)
		}
	})
}

// inflatedLen is how many bytes (at most limit+1) the gzip stream b decompresses to before it ends or fails.
func inflatedLen(b []byte, limit int64) int {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return 0
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(zr, limit+1))
	return int(n)
}

// TestParseAllocation holds Parse to the fuzz targets' allocation bound on the LLaMA tokenizer.json and on
// the worst inputs found for encoding/json: long arrays of tiny elements of the wrong type.
func TestParseAllocation(t *testing.T) {
	_, llama := loadLlama(t)
	zeros := "0" + strings.Repeat(",0", 99999)
	tests := []struct {
		name string
		js   []byte
	}{
		{"LLaMA", llama},
		{"added_tokens of zeros", []byte(`{"added_tokens": [` + zeros + `], "model": {"type": "BPE", "vocab": {"a": 0}}}`)},
		{"merges of zeros", []byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [` + zeros + `]}}`)},
		{"normalizers of zeros", []byte(`{"normalizer": {"type": "Sequence", "normalizers": [` + zeros + `]}, "model": {"type": "BPE", "vocab": {"a": 0}}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, max := allocs(func() { Parse(tt.js) }), uint64(allocPerByte*len(tt.js)+allocFixed); got > max {
				t.Errorf("Parse of %d bytes allocated %d; want at most %d", len(tt.js), got, max)
			}
		})
	}
}

// spmSeeds are tokenizer.model inputs for the SentencePiece fuzz targets: the two spm_train fixtures, a
// 60-byte model without byte fallback, the hand-made model of spm_test.go with a user-defined piece, and
// fields of every wire type.
func spmSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, name := range spmModels {
		b, err := os.ReadFile(filepath.Join(spmDir, name+".model"))
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	user := spmPiece{text: "<image>", typ: pieceUserDefined}
	small := []spmPiece{{text: "<unk>", typ: pieceUnknown}, {text: "<s>", typ: pieceControl}, {text: "</s>", typ: pieceControl},
		{text: "▁a", typ: pieceNormal}, {text: "a", score: -1, typ: pieceNormal}, {text: "▁", score: -1, typ: pieceNormal}, user}
	return append(seeds,
		spmProto(small, pb(nil).varint(35, 0), nil),
		spmProto(tinySPM(user), nil, nil),
		spmProto(tinySPM(), pb(nil).varint(35, 0).varint(43, 2), pb(nil).varint(4, 1)),
		append(spmProto(tinySPM(), nil, nil), pb(nil).tag(9, wireFixed64).varint(9, 1)...),
		pb(nil).tag(1, 3))
}

// FuzzParseSentencePiece feeds arbitrary bytes to ParseSentencePiece: a Tokenizer or an error, never a panic,
// and allocation within allocPerByte·len + allocFixed, the bound of the tokenizer.json targets. A protocol
// buffer costs far less per byte than JSON: TestParseSentencePieceAllocation measures 20 bytes a byte on
// LLaMA's vocabulary and 61 at worst (nested pieces, whose merges, at most one a byte of a piece, fill a map).
func FuzzParseSentencePiece(f *testing.F) {
	for _, s := range spmSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tok *Tokenizer
		var err error
		if got, max := allocs(func() { tok, err = ParseSentencePiece(b) }), uint64(allocPerByte*len(b)+allocFixed); got > max {
			t.Fatalf("ParseSentencePiece of %d bytes allocated %d; want at most %d", len(b), got, max)
		}
		if err == nil {
			checkLoaded(t, tok)
		}
	})
}

// FuzzEncodeSentencePiece is FuzzEncode on the llama tokenizer.model fixture: ids in range, and Decode
// inverting Encode for valid UTF-8 without a special token or "▁".
func FuzzEncodeSentencePiece(f *testing.F) {
	for _, s := range []string{"Hello  world", " \n", "é中🦙", "0123", "a</s>b", "x\x00y", "\xff", "   ", ""} {
		f.Add(s)
	}
	tok, _ := loadSPM(f, "llama")
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s, true)
		for _, id := range ids {
			if id < 0 || id >= tok.VocabSize() {
				t.Fatalf("Encode(%q) has id %d outside [0, %d)", s, id, tok.VocabSize())
			}
		}
		if utf8.ValidString(s) && !hasSpecial(s) && !strings.Contains(s, "▁") {
			if got := tok.Decode(tok.Encode(s, false)); got != s {
				t.Errorf("Decode(Encode(%q)) = %q", s, got)
			}
		}
	})
}

// TestParseSentencePieceAllocation holds ParseSentencePiece to the fuzz bound on the real LLaMA vocabulary
// and on inputs that maximise tables per byte: many one-character pieces, nested pieces with a merge for
// every split, many tiny fields in one piece.
func TestParseSentencePieceAllocation(t *testing.T) {
	var chars, nested []spmPiece
	for r := rune(0x4E00); r < 0x4E00+20000; r++ {
		chars = append(chars, spmPiece{text: string(r), typ: pieceNormal})
	}
	for n := 1; n <= maxPieceBytes; n++ {
		nested = append(nested, spmPiece{text: strings.Repeat("x", n), score: -float32(n), typ: pieceNormal})
	}
	var fields pb
	for range 100000 {
		fields = fields.varint(3, 1)
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"LLaMA", llamaAsSentencePiece(t)},
		{"one-character pieces", spmProto(tinySPM(chars...), nil, nil)},
		{"nested pieces", spmProto(tinySPM(nested...), nil, nil)},
		{"tiny fields", append(spmProto(tinySPM(), nil, nil), pb(nil).bytes(1, pb(nil).bytes(1, []byte("q")).append(fields))...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			got, max := allocs(func() { _, err = ParseSentencePiece(tt.b) }), uint64(allocPerByte*len(tt.b)+allocFixed)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes allocated %d (%.1f a byte)", len(tt.b), got, float64(got)/float64(len(tt.b)))
			if got > max {
				t.Errorf("ParseSentencePiece of %d bytes allocated %d; want at most %d", len(tt.b), got, max)
			}
		})
	}
}
