package inference

import (
	"fmt"
	"image"
	"strings"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/internal/llava"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/tokenizer"
	"github.com/flextrain/flextrain/model"
)

// Query is one question for Predict, about Image, or text-only when Image is nil.
type Query struct {
	Image    image.Image
	Question string
}

// Predict answers every query greedily with at most maxNew tokens: Generate's ids, decoded and cut at the
// end-of-sequence token.
func (tr *Trained) Predict(queries []Query, maxNew int) ([]string, error) {
	out, err := tr.Generate(queries, maxNew)
	if err != nil {
		return nil, err
	}
	answers := make([]string, len(out))
	for i, ids := range out {
		answers[i] = tr.DecodeAnswer(ids)
	}
	return answers, nil
}

// Generate decodes every query greedily by at most maxNew tokens, FlexAttention in inference mode (α = 1;
// a run trained on the LR view, or a base LLaVA, answers from it, α = 0), and returns the ids generated
// (the end-of-sequence token last when it came). Each prompt is the vicuna_v1 conversation of one human turn
// ("<image>\n" + question with an image) that ends with "ASSISTANT:", as LLaVA prompts at inference; the
// image is preprocessed as the loader does (pad to square, HR view, LR view). Suppressed ids are never
// generated.
func (tr *Trained) Generate(queries []Query, maxNew int) ([][]int, error) {
	if maxNew <= 0 {
		return nil, fmt.Errorf("inference: predict: max new tokens must be positive, got %d", maxNew)
	}
	b := &model.Batch[float32]{}
	for i, q := range queries {
		if err := tr.addQuery(b, q); err != nil {
			return nil, fmt.Errorf("inference: predict: query %d: %w", i, err)
		}
	}
	alpha, err := config.EvalAlpha(tr.Config.Flex.View)
	if err != nil {
		return nil, err
	}
	out, err := model.Generate(tr.Weights, b, maxNew, tr.Tokenizer.EOS(), alpha, tr.Suppressed())
	if err != nil {
		return nil, fmt.Errorf("inference: predict: %w", err)
	}
	return out, nil
}

// addQuery appends one query's prompt and pixels to b.
func (tr *Trained) addQuery(b *model.Batch[float32], q Query) error {
	ids, err := PromptIDs(tr.Tokenizer, q.Question, q.Image != nil)
	if err != nil {
		return err
	}
	var lr, hr []float32
	var size [2]int
	if q.Image != nil {
		c := tr.Config
		px, err := data.PreprocessImage(q.Image, c.Arch.Vision.ImageSize, c.Flex.Zoom)
		if err != nil {
			return err
		}
		lr, hr, size = px.LR, px.HR, px.OriSize
	}
	mask, labels := make([]int, len(ids)), make([]int, len(ids))
	for i := range ids {
		mask[i], labels[i] = 1, llava.IgnoreIndex
	}
	b.InputIDs, b.AttentionMask, b.Labels = append(b.InputIDs, ids), append(b.AttentionMask, mask), append(b.Labels, labels)
	b.LRPixels, b.HRPixels, b.OriSizes = append(b.LRPixels, lr), append(b.HRPixels, hr), append(b.OriSizes, size)
	return nil
}

// PromptIDs are the token ids of the vicuna_v1 prompt that asks question, up to where the assistant's
// answer begins ("… USER: <image>\nquestion ASSISTANT:"), with llava.ImageTokenID for the image when
// hasImage. They are the ids data.Preprocess gives for the conversation with an empty answer.
func PromptIDs(tok *tokenizer.Tokenizer, question string, hasImage bool) ([]int, error) {
	if strings.TrimSpace(question) == "" {
		return nil, fmt.Errorf("empty question")
	}
	ids, _, _, err := data.Preprocess(tok, []data.Turn{{From: "human", Value: question}, {From: "gpt", Value: ""}}, hasImage)
	return ids, err
}

// Suppressed are the ids an answer never holds: those past the tokenizer's vocabulary (the rows that pad a
// model's vocabulary to a multiple of 64) and llava-hf's "<image>" and "<pad>".
func (tr *Trained) Suppressed() []int {
	var ids []int
	for id := tr.Tokenizer.VocabSize(); id < tr.Config.Arch.Text.VocabSize; id++ {
		ids = append(ids, id)
	}
	if f := tr.Folder; f != nil && f.HFTokens != nil {
		ids = append(ids, f.HFTokens.Image, f.HFTokens.Pad)
	}
	return ids
}

// DecodeAnswer decodes generated ids up to (not including) the end-of-sequence token.
func (tr *Trained) DecodeAnswer(ids []int) string { return decodeAnswer(tr.Tokenizer, ids) }

// decodeAnswer decodes generated ids up to (not including) the end-of-sequence token.
func decodeAnswer(tok *tokenizer.Tokenizer, ids []int) string {
	for i, id := range ids {
		if id == tok.EOS() {
			ids = ids[:i]
			break
		}
	}
	return strings.TrimSpace(tok.Decode(ids))
}
