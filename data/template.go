package data

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/internal/llava"
)

// ImagePlaceholder is the text that marks where the image goes in a LLaVA conversation.
const ImagePlaceholder = "<image>"

// The vicuna_v1 template of LLaVA's llava/conversation.py (conv_vicuna_v1, SeparatorStyle.TWO).
const (
	// SystemPrompt opens every vicuna_v1 prompt, followed by a space.
	SystemPrompt = "A chat between a curious user and an artificial intelligence assistant. " +
		"The assistant gives helpful, detailed, and polite answers to the user's questions."
	roleUser      = "USER"
	roleAssistant = "ASSISTANT"
	sep           = " "    // after a user turn
	sep2          = "</s>" // after an assistant turn
)

// ErrConversation reports a conversation that LLaVA's preprocess_v1 refuses: no turns, a speaker other than
// "human" or "gpt", or turns that do not alternate human/gpt.
var ErrConversation = errors.New("data: malformed conversation")

// ErrImagePlaceholder reports a misplaced "<image>": in a sample without an image, or outside the first
// human turn of a sample with one.
var ErrImagePlaceholder = errors.New("data: misplaced <image> placeholder")

// Turn is one message of a LLaVA conversation, as in llava_v1_5_mix665k.json.
type Turn struct {
	From  string `json:"from"` // "human" or "gpt"
	Value string `json:"value"`
}

// Preprocess builds input ids and labels as LLaVA's preprocess_multimodal + preprocess_v1 do with the
// vicuna_v1 template and the slow LLaMA tokenizer:
//
//	ids:    <s> SYSTEM USER: q1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>
//	labels: only the tokens of a1</s> and a2</s>; everything else is llava.IgnoreIndex
//
// A first message from "gpt" is dropped. With hasImage, "<image>" is taken out of the first human turn and put
// back at its front ("<image>\n" + rest; added when absent) and encodes as llava.ImageTokenID; without an image a
// literal "<image>" is an error. The labels come from LLaVA's round arithmetic; when it does not add up to the
// token count ("tokenization mismatch" in LLaVA) every label is llava.IgnoreIndex and mismatch is true. Ids are not
// truncated: the collator cuts them to model_max_length.
func Preprocess(tok *tokenizer.Tokenizer, turns []Turn, hasImage bool) (ids, labels []int, mismatch bool, err error) {
	if tok == nil {
		return nil, nil, false, errors.New("data: preprocess: nil tokenizer")
	}
	turns, err = normalizeTurns(turns, hasImage)
	if err != nil {
		return nil, nil, false, err
	}
	prompt := vicunaPrompt(turns)
	ids = encodeWithImage(tok, prompt)
	labels, mismatch = maskTargets(tok, prompt, ids)
	return ids, labels, mismatch, nil
}

// normalizeTurns checks speakers and their order, drops a leading gpt turn and places the image placeholder.
// It returns a copy; the caller's turns are not modified.
func normalizeTurns(turns []Turn, hasImage bool) ([]Turn, error) {
	for i, t := range turns {
		if t.From != "human" && t.From != "gpt" {
			return nil, fmt.Errorf("%w: turn %d is from %q; want \"human\" or \"gpt\"", ErrConversation, i, t.From)
		}
	}
	skipped := 0
	if len(turns) > 0 && turns[0].From == "gpt" { // LLaVA: "Skip the first one if it is not from human"
		skipped = 1
	}
	out := append([]Turn(nil), turns[skipped:]...)
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no turns after the first human message", ErrConversation)
	}
	for j, t := range out {
		if want := [2]string{"human", "gpt"}[j%2]; t.From != want {
			return nil, fmt.Errorf("%w: turn %d is from %q; want %q (turns alternate human/gpt)", ErrConversation, j+skipped, t.From, want)
		}
	}
	return out, placeImage(out, hasImage, skipped)
}

// placeImage applies preprocess_multimodal to the first human turn: every "<image>" is removed and one is put
// at the front, followed by a newline. LLaVA's data has at most one placeholder, in that turn; FlexAttention's
// tools/prepare_data.py adds it when an image sample lacks it.
func placeImage(turns []Turn, hasImage bool, skipped int) error {
	for j, t := range turns {
		if strings.Contains(t.Value, ImagePlaceholder) && (!hasImage || j > 0) {
			return fmt.Errorf("%w: turn %d (has image: %v)", ErrImagePlaceholder, j+skipped, hasImage)
		}
	}
	if hasImage {
		rest := pyStrip(strings.ReplaceAll(turns[0].Value, ImagePlaceholder, ""))
		turns[0].Value = pyStrip(ImagePlaceholder + "\n" + rest)
	}
	return nil
}

// pyStrip trims whitespace as Python's str.strip() does (which also counts \x1c–\x1f as whitespace).
func pyStrip(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) })
}

// vicunaPrompt renders the turns as Conversation.get_prompt does for SeparatorStyle.TWO: an empty message
// leaves "ROLE:" with no separator.
func vicunaPrompt(turns []Turn) string {
	var b strings.Builder
	b.WriteString(SystemPrompt + sep)
	for i, t := range turns {
		role := [2]string{roleUser, roleAssistant}[i%2]
		if t.Value == "" {
			b.WriteString(role + ":")
			continue
		}
		b.WriteString(role + ": " + t.Value + [2]string{sep, sep2}[i%2])
	}
	return b.String()
}

// encodeWithImage is LLaVA's tokenizer_image_token: the text is split at "<image>", each chunk encoded with
// BOS, the first chunk's BOS kept and every chunk's own BOS dropped, and llava.ImageTokenID put between chunks.
// Without a placeholder it equals tok.Encode(text, true), which is what preprocess_v1 uses for text-only
// samples.
func encodeWithImage(tok *tokenizer.Tokenizer, text string) []int {
	chunks := strings.Split(text, ImagePlaceholder)
	first := tok.Encode(chunks[0], true)
	offset := 0
	if len(first) > 0 && first[0] == tok.BOS() {
		offset = 1
	}
	ids := append([]int(nil), first...)
	for _, c := range chunks[1:] {
		ids = append(ids, llava.ImageTokenID)
		ids = append(ids, dropFront(tok.Encode(c, true), offset)...)
	}
	return ids
}

// dropFront is Python's x[n:]: empty when x is shorter than n.
func dropFront(x []int, n int) []int {
	if n > len(x) {
		return nil
	}
	return x[n:]
}

// maskTargets is the masking loop of preprocess_v1. The prompt is cut into rounds at "</s>" and each round at
// " ASSISTANT: "; a round covers len(tok(round)) ids (its BOS stands for the "</s>" that ended it) and its
// instruction len(tok(instruction + " ASSISTANT:")) - 1 ids (less the BOS). LLaVA writes the latter as
// len(tok(instruction + " ASSISTANT: ")) - 2, dropping the lone "▁" that a SentencePiece tokenizer makes of the
// trailing space (in context it merges into the answer's first token): the same count for LLaMA, and the
// right one for tokenizers that make no token of a space, such as a WordLevel one with a Whitespace
// pre-tokenizer. cur starts at 1, after the BOS.
func maskTargets(tok *tokenizer.Tokenizer, prompt string, ids []int) (labels []int, mismatch bool) {
	labels = append([]int(nil), ids...)
	ignore(labels, 0, 1) // the BOS
	cur := 1
	answerSep := sep + roleAssistant + ": "
	for _, round := range strings.Split(prompt, sep2) {
		if round == "" {
			break
		}
		parts := strings.Split(round, answerSep)
		if len(parts) != 2 {
			break
		}
		roundLen := len(encodeWithImage(tok, round))
		instructionLen := len(encodeWithImage(tok, parts[0]+sep+roleAssistant+":")) - 1
		ignore(labels, cur, cur+instructionLen)
		cur += roundLen
	}
	ignore(labels, cur, len(labels))
	// LLaVA counts the ids that are not padding, and pads with unk_token.
	total := 0
	for _, id := range ids {
		if id != tok.UNK() {
			total++
		}
	}
	if cur != total {
		ignore(labels, 0, len(labels))
		return labels, true
	}
	return labels, false
}

// ignore sets labels[from:to] to llava.IgnoreIndex, clamped as a Python slice is.
func ignore(labels []int, from, to int) {
	for i := max(from, 0); i < min(to, len(labels)); i++ {
		labels[i] = llava.IgnoreIndex
	}
}
