package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The LLaMA fixture is written by scripts/make-tokenizer-fixture.sh from llama-tokenizer-js@1.2.2.
var llamaDir = filepath.Join("..", "testdata", "tokenizer", "llama")

type llamaExpected struct {
	Encodings []struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids"`
	} `json:"encodings"`
}

var (
	llamaOnce sync.Once
	llamaTok  *Tokenizer
	llamaJSON []byte // the decompressed tokenizer.json
	llamaErr  error
)

// loadLlama reads the fixture through compress/gzip once per test binary.
func loadLlama(t testing.TB) (*Tokenizer, []byte) {
	t.Helper()
	llamaOnce.Do(func() {
		f, err := os.Open(filepath.Join(llamaDir, "tokenizer.json.gz"))
		if err != nil {
			llamaErr = err
			return
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			llamaErr = err
			return
		}
		if llamaJSON, llamaErr = io.ReadAll(zr); llamaErr == nil {
			llamaTok, llamaErr = Parse(llamaJSON)
		}
	})
	if llamaErr != nil {
		t.Fatalf("load LLaMA fixture: %v", llamaErr)
	}
	return llamaTok, llamaJSON
}

func loadExpected(t *testing.T) llamaExpected {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(llamaDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e llamaExpected
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	if len(e.Encodings) < 40 {
		t.Fatalf("expected.json has %d encodings; want at least 40", len(e.Encodings))
	}
	return e
}

func TestLlamaEncodeMatchesLlamaTokenizerJS(t *testing.T) {
	tok, _ := loadLlama(t)
	for _, c := range loadExpected(t).Encodings {
		if got := tok.Encode(c.Text, true); !slices.Equal(got, c.IDs) {
			t.Errorf("Encode(%q) = %v; want %v", c.Text, got, c.IDs)
		}
	}
}

// TestLlamaPackageCases repeats the golden cases of llama-tokenizer-js's own test list, written here by hand so
// that a regenerated expected.json cannot silently change them.
func TestLlamaPackageCases(t *testing.T) {
	tok, _ := loadLlama(t)
	cases := []struct {
		text string
		want []int
	}{
		{"grabbed", []int{1, 2646, 1327, 287}},
		{" grabbed", []int{1, 29871, 2646, 1327, 287}},
		{"           grabbed", []int{1, 9651, 2646, 1327, 287}},
		{"\n", []int{1, 29871, 13}},
		{" \n", []int{1, 259, 13}},
		{"ax\n####\nboo", []int{1, 4853, 13, 4136, 13, 833, 29877}},
		{"🦙", []int{1, 29871, 243, 162, 169, 156}},
		{"镇", []int{1, 29871, 30411}},
		{"Ꙋ🦙", []int{1, 29871, 237, 156, 141, 243, 162, 169, 156}},
		{"a</s>b", []int{1, 263, 2, 289}},
	}
	for _, c := range cases {
		if got := tok.Encode(c.text, true); !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v; want %v", c.text, got, c.want)
		}
	}
}

func TestLlamaSpecialIDs(t *testing.T) {
	tok, _ := loadLlama(t)
	got := []int{tok.VocabSize(), tok.BOS(), tok.EOS(), tok.UNK(), tok.PAD()}
	want := []int{32000, 1, 2, 0, 0}
	if !slices.Equal(got, want) {
		t.Errorf("VocabSize, BOS, EOS, UNK, PAD = %v; want %v", got, want)
	}
	for tokStr, wantID := range map[string]int{"▁": 29871, "<0x0A>": 13, "</s>": 2, "▁▁": 259} {
		if id, ok := tok.TokenID(tokStr); !ok || id != wantID {
			t.Errorf("TokenID(%q) = %d, %v; want %d, true", tokStr, id, ok, wantID)
		}
	}
	if id, ok := tok.TokenID("no such token"); ok {
		t.Errorf("TokenID(unknown) = %d, true; want false", id)
	}
}

func TestLlamaDecode(t *testing.T) {
	tok, _ := loadLlama(t)
	cases := []struct {
		ids  []int
		want string
	}{
		{[]int{2646, 1327, 287}, "grabbed"},
		{[]int{29871, 2646, 1327, 287}, " grabbed"},
		{[]int{1, 2646, 1327, 287}, "<s> grabbed"}, // special tokens are kept, as HF's default decode
		{[]int{29871, 243, 162, 169, 156}, "🦙"},
		{[]int{29871, 243, 162}, "\uFFFD\uFFFD"}, // a cut UTF-8 sequence
		{[]int{263, -200, 99999, 2}, "a</s>"},    // the image placeholder and unknown ids are skipped
		{nil, ""},
	}
	for _, c := range cases {
		if got := tok.Decode(c.ids); got != c.want {
			t.Errorf("Decode(%v) = %q; want %q", c.ids, got, c.want)
		}
	}
}

func TestLlamaRoundTrip(t *testing.T) {
	tok, _ := loadLlama(t)
	for _, c := range loadExpected(t).Encodings {
		if hasSpecial(c.Text) {
			continue
		}
		if got := tok.Decode(tok.Encode(c.Text, false)); got != c.Text {
			t.Errorf("Decode(Encode(%q)) = %q", c.Text, got)
		}
	}
}

func hasSpecial(s string) bool {
	return strings.Contains(s, "<s>") || strings.Contains(s, "</s>") || strings.Contains(s, "<unk>")
}

// TestLlamaLongText checks the heap merge on a long single "word" against the concatenation of its sentences,
// which cannot merge across the "▁" that begins each of them.
func TestLlamaLongText(t *testing.T) {
	tok, _ := loadLlama(t)
	sentence := tok.Encode(" The quick brown fox jumps over the lazy dog.", false)[1:] // drop the dummy "▁"
	text := strings.Repeat(" The quick brown fox jumps over the lazy dog.", 250)
	want := make([]int, 0, 250*len(sentence))
	for range 250 {
		want = append(want, sentence...)
	}
	if got := tok.Encode(text, false)[1:]; !slices.Equal(got, want) {
		t.Errorf("Encode(250 sentences) has %d ids; want %d, the sentence's ids repeated", len(got), len(want))
	}
}

// TestLlamaMetaspaceForm re-reads the fixture in the pre-tokenizer form other LLaMA tokenizer.json files use
// and checks Hugging Face's Metaspace rules: no extra "▁" before a leading space, and cuts before each "▁".
func TestLlamaMetaspaceForm(t *testing.T) {
	tok, raw := loadLlama(t)
	piece := func(s string) []int { return tok.Encode(s, false) }
	cases := []struct {
		name, pre, text string
		want            []int
	}{
		{"first no split", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`,
			"Hello world", piece("Hello world")},
		{"first keeps leading space", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`,
			" grabbed", piece("grabbed")},
		{"first only at start", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`,
			"a</s>b", slices.Concat(piece("a"), []int{2, 29890})}, // 29890 is bare "b" (llama-tokenizer-js)
		{"legacy add_prefix_space splits", `{"type":"Metaspace","replacement":"▁","add_prefix_space":true}`,
			"a  b", slices.Concat(piece("a"), []int{29871}, piece("b"))},
		{"never prepends nothing", `{"type":"Metaspace","replacement":"▁","add_prefix_space":false}`,
			" grabbed", piece("grabbed")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m2 := withComponents(t, raw, "null", c.pre)
			if got := m2.Encode(c.text, false); !slices.Equal(got, c.want) {
				t.Errorf("Encode(%q) = %v; want %v", c.text, got, c.want)
			}
		})
	}
}

// withComponents re-parses a tokenizer.json with its normalizer and pre_tokenizer replaced.
func withComponents(t *testing.T, raw []byte, normalizer, pre string) *Tokenizer {
	t.Helper()
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	f["normalizer"], f["pre_tokenizer"] = json.RawMessage(normalizer), json.RawMessage(pre)
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tok
}

func TestLoadPlainAndGzip(t *testing.T) {
	_, raw := loadLlama(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(plain, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{plain, filepath.Join(llamaDir, "tokenizer.json.gz")} {
		tok, err := Load(path)
		if err != nil {
			t.Fatalf("Load(%s): %v", path, err)
		}
		if got, want := tok.Encode("grabbed", true), []int{1, 2646, 1327, 287}; !slices.Equal(got, want) {
			t.Errorf("Load(%s).Encode = %v; want %v", path, got, want)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("Load(missing) error = %v; want one naming the file", err)
	}
	bad := filepath.Join(dir, "bad.json.gz")
	if err := os.WriteFile(bad, []byte{0x1f, 0x8b, 0, 1}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil {
		t.Errorf("Load(truncated gzip) succeeded; want an error")
	}
}

func BenchmarkEncodeLlama10kB(b *testing.B) {
	tok, _ := loadLlama(b)
	var sb bytes.Buffer
	for sb.Len() < 10_000 {
		sb.WriteString("A chat between a curious user and an artificial intelligence assistant. 🦙 镇 1234\n")
	}
	text := sb.String()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.Encode(text, true)
	}
}

// TestConcurrentEncode shares one Tokenizer between goroutines, as the data loader's workers do; run it with
// -race.
func TestConcurrentEncode(t *testing.T) {
	tok, _ := loadLlama(t)
	want := tok.Encode("The bus in the image is white and red.</s>", true)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if got := tok.Encode("The bus in the image is white and red.</s>", true); !slices.Equal(got, want) {
					errs <- "concurrent Encode differs"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
