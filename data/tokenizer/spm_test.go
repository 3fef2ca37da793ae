package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The SentencePiece fixtures are written by scripts/make-spm-fixture.sh: models trained by spm_train, and the
// ids SentencePiece itself gives each text (through the slow LlamaTokenizer's splitting on <s>, </s>, <unk>).
var spmDir = filepath.Join("testdata", "spm")

type spmFixture struct {
	Model string `json:"model"`
	IDs   struct {
		VocabSize int `json:"vocab_size"`
		BOS       int `json:"bos"`
		EOS       int `json:"eos"`
		UNK       int `json:"unk"`
		PAD       int `json:"pad"`
	} `json:"ids"`
	Encodings []struct {
		Text    string  `json:"text"`
		IDs     []int   `json:"ids"`
		Decoded *string `json:"decoded"` // SentencePiece's decode; null for text with special tokens
	} `json:"encodings"`
}

// loadSPM loads testdata/spm/name.model through Load (which must tell it from JSON) and its golden file.
func loadSPM(t testing.TB, name string) (*Tokenizer, spmFixture) {
	t.Helper()
	tok, err := Load(filepath.Join(spmDir, name+".model"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(spmDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f spmFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Encodings) < 50 {
		t.Fatalf("%s.json has %d encodings; want at least 50", name, len(f.Encodings))
	}
	return tok, f
}

// spmModels are the fixture models: llama (LLaMA's trainer options) and variant (no byte fallback, extra
// spaces removed, user-defined and control symbols, a pad id).
var spmModels = []string{"llama", "variant"}

func TestSentencePieceMatchesSpmEncode(t *testing.T) {
	for _, name := range spmModels {
		t.Run(name, func(t *testing.T) {
			tok, f := loadSPM(t, name)
			matched := 0
			for _, c := range f.Encodings {
				if got := tok.Encode(c.Text, false); slices.Equal(got, c.IDs) || len(got)+len(c.IDs) == 0 {
					matched++
				} else {
					t.Errorf("Encode(%q) = %v; SentencePiece gives %v", c.Text, got, c.IDs)
				}
			}
			t.Logf("%d of %d texts encode as SentencePiece does", matched, len(f.Encodings))
		})
	}
}

// TestSentencePieceDecode compares Decode with SentencePiece's decode where both define the text: no special
// or unknown token (Decode keeps their spelling as tokenizer.json's decoder does, SentencePiece drops controls
// and writes " ⁇ " for <unk>), no "▁" in the text (SentencePiece with remove_extra_whitespaces drops every
// leading "▁" piece, tokenizer.json's decoder one space). It also checks that Decode inverts Encode on the
// llama model, which keeps every space.
func TestSentencePieceDecode(t *testing.T) {
	for _, name := range spmModels {
		t.Run(name, func(t *testing.T) {
			tok, f := loadSPM(t, name)
			compared := 0
			defer func() { t.Logf("%d texts decode as SentencePiece does", compared) }()
			for _, c := range f.Encodings {
				if c.Decoded == nil || slices.Contains(c.IDs, tok.UNK()) || strings.Contains(c.Text, "▁") {
					continue
				}
				if got := tok.Decode(c.IDs); got != *c.Decoded {
					t.Errorf("Decode(%v) = %q; SentencePiece gives %q", c.IDs, got, *c.Decoded)
				}
				compared++
				if name == "llama" && tok.Decode(tok.Encode(c.Text, false)) != c.Text {
					t.Errorf("Decode(Encode(%q)) = %q", c.Text, tok.Decode(tok.Encode(c.Text, false)))
				}
			}
		})
	}
}

func TestSentencePieceSpecialIDs(t *testing.T) {
	for _, name := range spmModels {
		t.Run(name, func(t *testing.T) {
			tok, f := loadSPM(t, name)
			pad := f.IDs.PAD
			if pad < 0 {
				pad = f.IDs.UNK // LLaVA pads with unk_token
			}
			got := []int{tok.VocabSize(), tok.BOS(), tok.EOS(), tok.UNK(), tok.PAD()}
			if want := []int{f.IDs.VocabSize, f.IDs.BOS, f.IDs.EOS, f.IDs.UNK, pad}; !slices.Equal(got, want) {
				t.Errorf("VocabSize, BOS, EOS, UNK, PAD = %v; want %v", got, want)
			}
			if got := tok.Encode("a</s>", true); got[0] != f.IDs.BOS || got[len(got)-1] != f.IDs.EOS {
				t.Errorf("Encode(a</s>, BOS) = %v; want BOS first and EOS last", got)
			}
		})
	}
}

// TestSentencePieceUserDefined: the variant model's user-defined <image> is one id wherever it stands, never
// merged with its neighbours, and, unlike an added token, does not restart the dummy prefix after it.
func TestSentencePieceUserDefined(t *testing.T) {
	tok, _ := loadSPM(t, "variant")
	image, ok := tok.TokenID("<image>")
	if !ok {
		t.Fatal("no <image> piece")
	}
	b := tok.Encode("b", false) // "▁b"
	got := tok.Encode("a<image>b", false)
	if !slices.Contains(got, image) || slices.Equal(got[len(got)-len(b):], b) {
		t.Errorf("Encode(a<image>b) = %v; want <image> (%d) and a bare b, not %v", got, image, b)
	}
}

// TestSentencePieceGzip: Load tells a gzip-compressed tokenizer.model from a tokenizer.json after inflating it.
func TestSentencePieceGzip(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(spmDir, "llama.model"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	path := filepath.Join(t.TempDir(), "tokenizer.model.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := loadSPM(t, "llama")
	if got, w := tok.Encode("Hello world", true), want.Encode("Hello world", true); !slices.Equal(got, w) {
		t.Errorf("gzip model: Encode = %v; want %v", got, w)
	}
}

func TestSpmNormalizer(t *testing.T) {
	cases := []struct {
		name string
		n    spmNormalizer
		in   string
		want string
	}{
		{"LLaMA", spmNormalizer{dummyPrefix: true, escape: true}, " a  b ", "▁▁a▁▁b▁"},
		{"LLaMA empty", spmNormalizer{dummyPrefix: true, escape: true}, "", ""},
		{"LLaMA only spaces", spmNormalizer{dummyPrefix: true, escape: true}, "  ", "▁▁▁"},
		{"remove extra", spmNormalizer{dummyPrefix: true, removeExtra: true, escape: true}, "  a   b  ", "▁a▁b"},
		{"remove extra only spaces", spmNormalizer{dummyPrefix: true, removeExtra: true, escape: true}, "   ", ""},
		{"remove extra trims a literal ▁ at the end", spmNormalizer{removeExtra: true, escape: true}, "a ▁▁", "a"},
		{"remove extra keeps tabs", spmNormalizer{removeExtra: true, escape: true}, "\ta \n", "\ta▁\n"},
		{"no escape", spmNormalizer{dummyPrefix: true, removeExtra: true}, " a  b ", " a b"},
		{"nothing", spmNormalizer{}, " a ", " a "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.n.normalize(c.in); got != c.want {
				t.Errorf("normalize(%q) = %q; want %q", c.in, got, c.want)
			}
		})
	}
}

// pb builds protocol buffer messages for tests.
type pb []byte

func (b pb) tag(num, wire int) pb { return binary.AppendUvarint(b, uint64(num<<3|wire)) }

func (b pb) varint(num int, v int64) pb {
	return binary.AppendUvarint(b.tag(num, wireVarint), uint64(v))
}

func (b pb) append(more pb) pb { return append(b, more...) }

func (b pb) bytes(num int, data []byte) pb {
	return append(binary.AppendUvarint(b.tag(num, wireBytes), uint64(len(data))), data...)
}

func (b pb) float(num int, v float32) pb {
	return binary.LittleEndian.AppendUint32(b.tag(num, wireFixed32), math.Float32bits(v))
}

// spmProto writes a ModelProto of the given pieces with LLaMA's trainer and normalizer settings, changed by
// the trainer and normalizer fields appended to them (later fields win).
func spmProto(pieces []spmPiece, trainer, norm pb) []byte {
	var m pb
	for _, p := range pieces {
		m = m.bytes(1, pb(nil).bytes(1, []byte(p.text)).float(2, p.score).varint(3, int64(p.typ)))
	}
	ts := pb(nil).varint(3, modelBPE).varint(35, 1).varint(40, 0).varint(41, 1).varint(42, 2).varint(43, -1)
	ns := pb(nil).bytes(1, []byte("identity")).varint(3, 1).varint(4, 0).varint(5, 1)
	return m.bytes(2, append(ts, trainer...)).bytes(3, append(ns, norm...))
}

// bytePieces are the 256 byte pieces.
func bytePieces() []spmPiece {
	ps := make([]spmPiece, 256)
	for i := range ps {
		ps[i] = spmPiece{text: string(fmtByte(byte(i))), typ: pieceByte}
	}
	return ps
}

func fmtByte(v byte) string {
	const hex = "0123456789ABCDEF"
	return "<0x" + string([]byte{hex[v>>4], hex[v&15]}) + ">"
}

// tinySPM is a hand-made LLaMA-like model: <unk> <s> </s>, the bytes, then pieces of descending score.
func tinySPM(extra ...spmPiece) []spmPiece {
	ps := []spmPiece{{text: "<unk>", typ: pieceUnknown}, {text: "<s>", typ: pieceControl}, {text: "</s>", typ: pieceControl}}
	ps = append(ps, bytePieces()...)
	for i, s := range []string{"▁a", "ab", "▁ab", "bc", "a", "b", "c", "▁"} {
		ps = append(ps, spmPiece{text: s, score: float32(-i), typ: pieceNormal})
	}
	return append(ps, extra...)
}

// TestSentencePieceScoreMerges checks the merge order on a hand-made model: the pair making the
// highest-scoring piece first, the leftmost of pairs whose pieces score the same.
func TestSentencePieceScoreMerges(t *testing.T) {
	id := func(tok *Tokenizer, s string) int { i, _ := tok.TokenID(s); return i }
	tests := []struct {
		name   string
		pieces []spmPiece
		text   string
		want   []string
	}{
		// "▁a" (score 0) beats "ab" (-1): ▁a b; then "▁ab" (-2) from ▁a + b.
		{"best score first", tinySPM(), "ab", []string{"▁ab"}},
		// ▁a, then ▁a + b ("▁ab", -2) before b + c ("bc", -3).
		{"merged symbols merge again", tinySPM(), "abc", []string{"▁ab", "c"}},
		// "▁" stays alone: no piece joins it to its neighbours.
		{"spaces", tinySPM(), "a bc", []string{"▁a", "▁", "bc"}},
		// Equal scores: "xy" and "yz" both -10; in "xyz" the leftmost pair merges first.
		{"leftmost on a tie", tinySPM(spmPiece{text: "x", score: -20, typ: pieceNormal}, spmPiece{text: "y", score: -20, typ: pieceNormal},
			spmPiece{text: "z", score: -20, typ: pieceNormal}, spmPiece{text: "xy", score: -10, typ: pieceNormal},
			spmPiece{text: "yz", score: -10, typ: pieceNormal}), "xyz", []string{"▁", "xy", "z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseSentencePiece(spmProto(tt.pieces, nil, nil))
			if err != nil {
				t.Fatal(err)
			}
			var want []int
			for _, s := range tt.want {
				want = append(want, id(tok, s))
			}
			if got := tok.Encode(tt.text, false); !slices.Equal(got, want) {
				t.Errorf("Encode(%q) = %v; want %v %q", tt.text, got, want, tt.want)
			}
		})
	}
}

func TestParseSentencePieceErrors(t *testing.T) {
	normal := func(s string) spmPiece { return spmPiece{text: s, typ: pieceNormal} }
	noBytes := tinySPM()[:3]
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"not a protobuf", []byte("\xff\xff\xff"), ErrFormat},
		{"truncated", spmProto(tinySPM(), nil, nil)[:100], ErrFormat},
		{"group wire type", pb(nil).tag(1, 3), ErrFormat},
		{"piece of the wrong wire type", pb(nil).varint(1, 5), ErrFormat},
		{"empty piece", spmProto(append(tinySPM(), spmPiece{typ: pieceNormal}), nil, nil), ErrFormat},
		{"bad piece type", spmProto(append(tinySPM(), spmPiece{text: "q", typ: 9}), nil, nil), ErrFormat},
		{"no pieces", spmProto(nil, nil, nil), ErrFormat},
		{"unigram", spmProto(tinySPM(), pb(nil).varint(3, modelUnigram), nil), ErrUnsupported},
		{"model type absent is unigram", pb(nil).bytes(1, pb(nil).bytes(1, []byte("<unk>")).varint(3, 2)), ErrUnsupported},
		{"empty file", nil, ErrFormat},
		{"whitespace as suffix", spmProto(tinySPM(), pb(nil).varint(24, 1), nil), ErrUnsupported},
		{"character map", spmProto(tinySPM(), nil, pb(nil).bytes(2, []byte{1, 2, 3})), ErrUnsupported},
		{"denormalizer", append(spmProto(tinySPM(), nil, nil), pb(nil).bytes(5, pb(nil).bytes(2, []byte{1}))...), ErrUnsupported},
		{"duplicate piece", spmProto(append(tinySPM(), normal("ab")), nil, nil), ErrFormat},
		{"two unknown pieces", spmProto(append(tinySPM(), spmPiece{text: "<unk2>", typ: pieceUnknown}), nil, nil), ErrFormat},
		{"no unknown piece", spmProto(tinySPM()[1:], pb(nil).varint(40, -1).varint(41, 0).varint(42, 1), nil), ErrFormat},
		{"unknown piece of one character", spmProto(append([]spmPiece{{text: "?", typ: pieceUnknown}}, tinySPM()[1:]...), nil, nil), ErrUnsupported},
		{"unused piece", spmProto(append(tinySPM(), spmPiece{text: "abc", typ: pieceUnused}), nil, nil), ErrUnsupported},
		{"byte piece misspelled", spmProto(append(tinySPM(), spmPiece{text: "<0x4g>", typ: pieceByte}), nil, nil), ErrFormat},
		{"byte piece in lower case", spmProto(append(noBytes, spmPiece{text: "<0x0a>", typ: pieceByte}), nil, nil), ErrFormat},
		{"byte piece without byte_fallback", spmProto(tinySPM(), pb(nil).varint(35, 0), nil), ErrFormat},
		{"byte_fallback without bytes", spmProto(append(noBytes, normal("a")), nil, nil), ErrFormat},
		{"unk_id elsewhere", spmProto(tinySPM(), pb(nil).varint(40, 5), nil), ErrFormat},
		{"bos_id not control", spmProto(tinySPM(), pb(nil).varint(41, 300), nil), ErrFormat},
		{"eos_id out of range", spmProto(tinySPM(), pb(nil).varint(42, 99999), nil), ErrFormat},
		{"piece of a character outside the vocabulary", spmProto(append(tinySPM(), normal("aé")), nil, nil), ErrUnsupported},
		{"piece too long", spmProto(append(tinySPM(), normal(strings.Repeat("a", maxPieceBytes+1))), nil, nil), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseSentencePiece(tt.b); !errors.Is(err, tt.want) {
				t.Errorf("ParseSentencePiece error = %v; want %v", err, tt.want)
			}
		})
	}
}

// llamaAsSentencePiece writes the LLaMA fixture's vocabulary as a tokenizer.model: each piece's score is
// minus the rank of the first tokenizer.json merge that makes it (the real tokenizer.model orders its merges
// by score too); pieces no merge makes score below all others.
func llamaAsSentencePiece(t *testing.T) []byte {
	t.Helper()
	_, raw := loadLlama(t)
	var f fileJSON
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	pairs, err := parseMerges(f.Model.Merges)
	if err != nil {
		t.Fatal(err)
	}
	first := map[string]int{}
	for rank, p := range pairs {
		if _, ok := first[p[0]+p[1]]; !ok {
			first[p[0]+p[1]] = rank
		}
	}
	pieces := make([]spmPiece, len(f.Model.Vocab))
	for s, id := range f.Model.Vocab {
		pieces[id] = spmPiece{text: s, score: -float32(len(pairs) + id), typ: llamaPieceType(s, id)}
		if rank, ok := first[s]; ok {
			pieces[id].score = -float32(rank)
		}
	}
	return spmProto(pieces, nil, nil)
}

func llamaPieceType(s string, id int) pieceType {
	switch _, isByte := byteToken(s); {
	case id == 0:
		return pieceUnknown
	case id <= 2:
		return pieceControl
	case isByte:
		return pieceByte
	}
	return pieceNormal
}

// TestSentencePieceLlamaVocab: the LLaMA vocabulary read as a tokenizer.model encodes every golden text of
// the tokenizer.json fixture (llama-tokenizer-js's ids) the same, and decodes the same.
func TestSentencePieceLlamaVocab(t *testing.T) {
	spmTok, err := ParseSentencePiece(llamaAsSentencePiece(t))
	if err != nil {
		t.Fatal(err)
	}
	jsonTok, _ := loadLlama(t)
	for _, c := range loadExpected(t).Encodings {
		got := spmTok.Encode(c.Text, true)
		if !slices.Equal(got, c.IDs) {
			t.Errorf("tokenizer.model: Encode(%q) = %v; want %v", c.Text, got, c.IDs)
		}
		if d, w := spmTok.Decode(got), jsonTok.Decode(c.IDs); d != w {
			t.Errorf("tokenizer.model: Decode(%v) = %q; tokenizer.json gives %q", got, d, w)
		}
	}
	got := []int{spmTok.VocabSize(), spmTok.BOS(), spmTok.EOS(), spmTok.UNK(), spmTok.PAD()}
	if want := []int{32000, 1, 2, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("VocabSize, BOS, EOS, UNK, PAD = %v; want %v", got, want)
	}
}
