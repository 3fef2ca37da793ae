package tokenizer

import (
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
