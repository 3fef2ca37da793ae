package synth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/flextrain/flextrain/data/tokenizer"
)

// systemPrompt is LLaVA's vicuna_v1 system prompt (llava/conversation.py), which the template puts before
// every conversation; the vocabulary must cover it. data.SystemPrompt holds the same text; the tests check
// that the two agree (this package does not import data, so that data may import it).
const systemPrompt = "A chat between a curious user and an artificial intelligence assistant. " +
	"The assistant gives helpful, detailed, and polite answers to the user's questions."

// roleText is how the vicuna_v1 template writes the two roles.
const roleText = "USER: ASSISTANT:"

// Special tokens, with the ids LLaMA gives them; the template pads with <unk>.
var specials = []string{"<unk>", "<s>", "</s>"}

// wordPattern is Hugging Face's Whitespace pre-tokenizer: runs of word characters, runs of other non-space
// characters.
var wordPattern = regexp.MustCompile(`\w+|[^\w\s]+`)

// vocabulary returns every token the generated text can contain, specials first, then in order of first
// appearance, without repeats: the system prompt, the roles, the question templates and every slot value and
// answer. A dataset of boards (boards set) adds the board questions' words after all others, so that every
// other word keeps its id.
func vocabulary(boards bool) []string {
	texts := []string{systemPrompt, roleText, suffix, askColour, askShape, askRead, askPlus, askMinus, askAfter, askFact}
	for _, list := range [][]string{shapes, colourNames(), numbers(), letters, smallWords} {
		texts = append(texts, list...)
	}
	for _, f := range facts {
		texts = append(texts, f.thing, f.colour)
	}
	if boards {
		texts = append(append(texts, askRow, askColumn, askCount), append(rowNames, columnNames...)...)
	}
	seen := map[string]bool{}
	out := append([]string(nil), specials...)
	for _, t := range texts {
		for _, w := range wordPattern.FindAllString(strings.ReplaceAll(t, "%s", " "), -1) {
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	return out
}

// colourNames lists the palette's names.
func colourNames() []string {
	out := make([]string, len(palette))
	for i, c := range palette {
		out[i] = c.name
	}
	return out
}

// tokenizerJSON renders a Hugging Face tokenizer.json: a WordLevel model over vocabulary(boards) with the Whitespace
// pre-tokenizer, no normalizer (case matters) and no post-processor (the template adds <s> itself). The
// vocabulary is written in id order, which json.Marshal of a map would not do.
func tokenizerJSON(boards bool) ([]byte, error) {
	added := make([]tokenizer.AddedToken, len(specials))
	for i, s := range specials {
		added[i] = tokenizer.AddedToken{ID: i, Content: s, Special: true}
	}
	addedJSON, err := marshal(added, "  ")
	if err != nil {
		return nil, fmt.Errorf("synth: tokenizer.json: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n")
	fmt.Fprintf(&b, "  \"added_tokens\": %s,\n", addedJSON)
	b.WriteString("  \"normalizer\": null,\n  \"pre_tokenizer\": {\"type\": \"Whitespace\"},\n")
	b.WriteString("  \"post_processor\": null,\n  \"decoder\": null,\n")
	b.WriteString("  \"model\": {\n    \"type\": \"WordLevel\",\n    \"vocab\": {")
	for id, w := range vocabulary(boards) {
		key, err := marshal(w, "")
		if err != nil {
			return nil, fmt.Errorf("synth: tokenizer.json: %w", err)
		}
		if id > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n      %s: %d", key, id)
	}
	b.WriteString("\n    },\n    \"unk_token\": \"<unk>\"\n  }\n}\n")
	return b.Bytes(), nil
}

// marshal encodes v as JSON without escaping <, > and & (so "<s>" and "<image>" stay readable), indented
// with two spaces after prefix when prefix is not empty, and without the encoder's trailing newline.
func marshal(v any, prefix string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if prefix != "" {
		enc.SetIndent(prefix, "  ")
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
