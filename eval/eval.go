// Package eval scores a model on held-out data: the mean loss over supervised tokens and the exact match of
// greedy answers, in total and per record kind (the synthetic set's "small", "large", "text"). Training
// evaluates with it every eval_steps; `flextrain eval` and the demo score checkpoints with it.
package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/internal/feed"
	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model"
)

// MaxAnswer is the longest answer, in tokens, whose exact match is scored: longer answers are free text.
const MaxAnswer = 16

// KindMetrics is the evaluation of the samples of one kind (or of all of them): the mean loss over their
// supervised tokens and the exact-match accuracy of their greedy answers.
type KindMetrics struct {
	Loss     float64 `json:"loss"`
	Samples  int     `json:"samples"`
	Accuracy float64 `json:"accuracy"`
	Answers  int     `json:"answers"` // samples whose answer was short enough to score
	Correct  int     `json:"correct"`
	tokens   int
	lossSum  float64
}

// Report is one evaluation of a data file: the totals with Hugging Face's eval_* names, and per record
// kind when the records carry one (the synthetic set's "small", "large", "text").
type Report struct {
	Loss     float64                 `json:"eval_loss"`
	Samples  int                     `json:"eval_samples"`
	Accuracy float64                 `json:"eval_accuracy"`
	Answers  int                     `json:"eval_answers"`
	Correct  int                     `json:"eval_correct"`
	ByKind   map[string]KindMetrics  `json:"by_kind,omitempty"`
	groups   map[string]*KindMetrics // the sums behind it, by kind ("" for records without one)
}

// Evaluate reads the loader to its end and reports the mean loss over supervised tokens and the exact-match
// accuracy of greedy answers (eos ends one), in total and grouped by kinds[record id]: each batch is split
// by kind, so every group's loss is that of its own samples. A sample whose id kinds lacks (or a nil kinds)
// counts in the totals only. alpha is FlexAttention's blend weight: 1 its inference mode, 0 plain
// attention, exactly the LR view of a base model (config.EvalAlpha says which a run is scored at).
func Evaluate(ctx context.Context, w *model.Weights, l *data.Loader, eos int, kinds map[string]string, alpha float64) (Report, error) {
	groups := map[string]*KindMetrics{}
	for {
		if err := ctx.Err(); err != nil {
			return Report{}, err
		}
		b, err := l.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Report{}, fmt.Errorf("eval: data: %w", err)
		}
		for kind, idx := range groupByKind(b.IDs, kinds) {
			if err := evalGroup(w, subBatch(feed.Batch(b), idx), eos, alpha, group(groups, kind)); err != nil {
				return Report{}, fmt.Errorf("eval: batch %v: %w", b.IDs, err)
			}
		}
	}
	return report(groups), nil
}

// group returns the metrics of kind, creating them.
func group(groups map[string]*KindMetrics, kind string) *KindMetrics {
	if groups[kind] == nil {
		groups[kind] = &KindMetrics{}
	}
	return groups[kind]
}

// groupByKind returns the positions of the batch's samples by kind ("" for an unknown id).
func groupByKind(ids []string, kinds map[string]string) map[string][]int {
	out := map[string][]int{}
	for i, id := range ids {
		out[kinds[id]] = append(out[kinds[id]], i)
	}
	return out
}

// subBatch keeps the samples idx of b.
func subBatch(b *model.Batch[float32], idx []int) *model.Batch[float32] {
	out := &model.Batch[float32]{}
	for _, i := range idx {
		out.InputIDs, out.AttentionMask = append(out.InputIDs, b.InputIDs[i]), append(out.AttentionMask, b.AttentionMask[i])
		out.Labels, out.OriSizes = append(out.Labels, b.Labels[i]), append(out.OriSizes, b.OriSizes[i])
		if b.Boxes != nil {
			out.Boxes = append(out.Boxes, b.Boxes[i])
		}
		out.LRPixels, out.HRPixels = append(out.LRPixels, b.LRPixels[i]), append(out.HRPixels, b.HRPixels[i])
	}
	return out
}

// evalGroup adds the loss and the exact matches of one batch to m.
func evalGroup(w *model.Weights, b *model.Batch[float32], eos int, alpha float64, m *KindMetrics) error {
	loss, n, err := batchLoss(w, b, alpha)
	if err != nil {
		return err
	}
	if n > 0 {
		m.lossSum, m.tokens = m.lossSum+loss*float64(n), m.tokens+n
	}
	correct, scored, err := exactMatches(w, b, eos, alpha)
	if err != nil {
		return err
	}
	m.Samples, m.Correct, m.Answers = m.Samples+b.Len(), m.Correct+correct, m.Answers+scored
	return nil
}

// report turns the groups into totals and per-kind metrics (the unknown kind "" is not listed).
func report(groups map[string]*KindMetrics) Report {
	var total KindMetrics
	r := Report{ByKind: map[string]KindMetrics{}}
	for kind, m := range groups {
		total.lossSum, total.tokens = total.lossSum+m.lossSum, total.tokens+m.tokens
		total.Samples, total.Answers, total.Correct = total.Samples+m.Samples, total.Answers+m.Answers, total.Correct+m.Correct
		if kind != "" {
			r.ByKind[kind] = m.finish()
		}
	}
	t := total.finish()
	r.Loss, r.Samples, r.Accuracy, r.Answers, r.Correct = t.Loss, t.Samples, t.Accuracy, t.Answers, t.Correct
	if len(r.ByKind) == 0 {
		r.ByKind = nil
	}
	r.groups = groups
	return r
}

// Reduce combines the reports of several processes that each evaluated their share of one data file: the
// sums behind r, for the record kinds of the file (KindsOf) and the records without one, go through sum (an
// in-place all-reduce over the processes), and the report of the whole file is made from the totals.
func (r Report) Reduce(kinds []string, sum func([]float64) error) (Report, error) {
	keys := append([]string{""}, kinds...)
	buf := make([]float64, 5*len(keys))
	for i, k := range keys {
		if m := r.groups[k]; m != nil {
			copy(buf[5*i:], []float64{m.lossSum, float64(m.tokens), float64(m.Samples), float64(m.Answers), float64(m.Correct)})
		}
	}
	if err := sum(buf); err != nil {
		return Report{}, fmt.Errorf("eval: reduce: %w", err)
	}
	groups := map[string]*KindMetrics{}
	for i, k := range keys {
		v := buf[5*i : 5*i+5]
		if v[2] > 0 {
			groups[k] = &KindMetrics{lossSum: v[0], tokens: int(v[1]), Samples: int(v[2]), Answers: int(v[3]), Correct: int(v[4])}
		}
	}
	return report(groups), nil
}

// KindsOf lists the distinct kinds of a RecordKinds map, sorted: the same list on every process that read
// the same file.
func KindsOf(kinds map[string]string) []string {
	return slices.Compact(slices.Sorted(maps.Values(kinds)))
}

// finish computes the means.
func (m KindMetrics) finish() KindMetrics {
	m.Loss = m.lossSum / math.Max(1, float64(m.tokens))
	if m.Answers > 0 {
		m.Accuracy = float64(m.Correct) / float64(m.Answers)
	}
	return m
}

// Kinds lists the kinds of a report, sorted.
func (r Report) Kinds() []string { return slices.Sorted(maps.Keys(r.ByKind)) }

// batchLoss is the forward-only loss of a batch with blend weight alpha and its number of supervised tokens.
func batchLoss(w *model.Weights, b *model.Batch[float32], alpha float64) (float64, int, error) {
	g, err := model.Build(w, b, model.Options{Mode: model.Train, Alpha: alpha})
	if err != nil {
		return 0, 0, err
	}
	defer g.Close()
	if err := g.Run(); err != nil {
		return 0, 0, err
	}
	return g.Loss(), feed.Supervised(b.Labels), nil
}

// exactMatches decodes the first answer of every sample whose answer is short and counts those whose
// greedy answer equals the reference token for token.
func exactMatches(w *model.Weights, b *model.Batch[float32], eos int, alpha float64) (correct, scored int, err error) {
	for s := range b.InputIDs {
		prompt, answer := SplitAnswer(b, s, eos)
		if prompt == nil || len(answer) > MaxAnswer {
			continue
		}
		got, err := model.Generate(w, prompt, len(answer)+1, eos, alpha, nil) // nil: an answer holding a non-text id counts as wrong
		if err != nil {
			return 0, 0, err
		}
		scored++
		if equalAnswer(got[0], answer, eos) {
			correct++
		}
	}
	return correct, scored, nil
}

// SplitAnswer cuts sample s before its first supervised token: the prompt as a batch of one, and the answer
// tokens up to (not including) eos. A sample without supervised tokens has no prompt.
func SplitAnswer(b *model.Batch[float32], s, eos int) (*model.Batch[float32], []int) {
	ids, labels := b.InputIDs[s], b.Labels[s]
	start := -1
	for i := 1; i < len(labels); i++ {
		if labels[i] != llava.IgnoreIndex {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, nil
	}
	var answer []int
	for i := start; i < len(labels) && labels[i] != llava.IgnoreIndex && labels[i] != eos; i++ {
		answer = append(answer, labels[i])
	}
	mask, lab := make([]int, start), make([]int, start)
	for i := range mask {
		mask[i], lab[i] = 1, llava.IgnoreIndex
	}
	out := &model.Batch[float32]{InputIDs: [][]int{ids[:start]}, AttentionMask: [][]int{mask}, Labels: [][]int{lab},
		LRPixels: b.LRPixels[s : s+1], HRPixels: b.HRPixels[s : s+1], OriSizes: b.OriSizes[s : s+1]}
	if b.Boxes != nil {
		out.Boxes = b.Boxes[s : s+1]
	}
	return out, answer
}

// equalAnswer compares a generated sequence, cut at eos, with the reference answer.
func equalAnswer(got, want []int, eos int) bool {
	for i, id := range got {
		if id == eos {
			got = got[:i]
			break
		}
	}
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// AccuracyKey is the metrics.jsonl key of the exact-match accuracy on the questions of kind ("" for all).
func AccuracyKey(kind string) string {
	if kind == "" {
		return "eval_accuracy"
	}
	return "eval_accuracy_" + kind
}
