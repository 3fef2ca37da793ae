package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/flextrain/flextrain/config"
	"io"
	"math"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/internal/fileio"
	"github.com/flextrain/flextrain/model"
)

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
	Loss     float64                `json:"eval_loss"`
	Samples  int                    `json:"eval_samples"`
	Accuracy float64                `json:"eval_accuracy"`
	Answers  int                    `json:"eval_answers"`
	Correct  int                    `json:"eval_correct"`
	ByKind   map[string]KindMetrics `json:"by_kind,omitempty"`
}

// EvaluateByKind is Evaluate with the samples grouped by kinds[record id]: each batch is split by kind, so
// every group's loss is that of its own samples. A sample whose id kinds lacks (or a nil kinds) counts in
// the totals only. eos ends a generated answer; FlexAttention runs in inference mode (α = 1).
func EvaluateByKind(ctx context.Context, w *model.Weights, l *data.Loader, eos int, kinds map[string]string) (Report, error) {
	return evaluateKinds(ctx, w, l, eos, kinds, 1)
}

// evaluateKinds is EvaluateByKind with blend weight alpha: α = 0 makes every FlexAttention layer plain
// attention, exactly the LR view of a base model, in the loss and in greedy decoding.
func evaluateKinds(ctx context.Context, w *model.Weights, l *data.Loader, eos int, kinds map[string]string, alpha float64) (Report, error) {
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
			return Report{}, fmt.Errorf("train: eval data: %w", err)
		}
		for kind, idx := range groupByKind(b.IDs, kinds) {
			if err := evalGroup(w, subBatch(toModelBatch(b, nil), idx), eos, alpha, group(groups, kind)); err != nil {
				return Report{}, fmt.Errorf("train: eval batch %v: %w", b.IDs, err)
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
func subBatch(b *model.Batch, idx []int) *model.Batch {
	out := &model.Batch{}
	for _, i := range idx {
		out.InputIDs, out.AttentionMask = append(out.InputIDs, b.InputIDs[i]), append(out.AttentionMask, b.AttentionMask[i])
		out.Labels, out.OriSizes = append(out.Labels, b.Labels[i]), append(out.OriSizes, b.OriSizes[i])
		out.LRPixels, out.HRPixels = append(out.LRPixels, b.LRPixels[i]), append(out.HRPixels, b.HRPixels[i])
	}
	return out
}

// evalGroup adds the loss and the exact matches of one batch to m.
func evalGroup(w *model.Weights, b *model.Batch, eos int, alpha float64, m *KindMetrics) error {
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
	return r
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
func (r Report) Kinds() []string { return sortedNames(r.ByKind) }

// RecordKinds reads the "kind" field of every record of a LLaVA data file (a JSON array or JSON Lines), by
// record id; records without one are left out. Two records with one id but different kinds are an error.
func RecordKinds(path string) (map[string]string, error) {
	recs, err := readMeta(path)
	if err != nil {
		return nil, err
	}
	kinds := map[string]string{}
	for i, r := range recs {
		id := r.id()
		if k, ok := kinds[id]; ok && k != r.Kind {
			return nil, fmt.Errorf("train: read kinds %s: record %d: id %s has kind %q and %q", path, i, id, k, r.Kind)
		}
		if r.Kind != "" {
			kinds[id] = r.Kind
		}
	}
	return kinds, nil
}

// readMeta reads the fields of every record that evaluation uses beyond the conversation.
func readMeta(path string) ([]recordMeta, error) {
	b, err := fileio.ReadFile(path, 0)
	if err != nil {
		return nil, fmt.Errorf("train: read kinds %s: %w", path, err)
	}
	recs, err := decodeMeta(b)
	if err != nil {
		return nil, fmt.Errorf("train: read kinds %s: %w", path, err)
	}
	return recs, nil
}

// recordMeta is the part of a record evaluation reads: its id, the synthetic set's kind and the target's
// bounding box (original pixels, [x0, y0, x1, y1], x1 and y1 exclusive).
type recordMeta struct {
	ID   json.RawMessage `json:"id"`
	Kind string          `json:"kind"`
	Box  []int           `json:"box"`
}

// id is the record id as the loader reports it: a string as is, a number as its literal text.
func (r recordMeta) id() string {
	var s string
	if json.Unmarshal(r.ID, &s) == nil {
		return s
	}
	return string(r.ID)
}

// decodeMeta reads a JSON array of records or one record per line.
func decodeMeta(b []byte) ([]recordMeta, error) {
	b = bytes.TrimSpace(b)
	var recs []recordMeta
	if len(b) > 0 && b[0] == '[' {
		err := json.Unmarshal(b, &recs)
		return recs, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var r recordMeta
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("record %d: %w", len(recs), err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// EvaluateFile evaluates the trained model on every record of the data file path, whose images lie under
// imageFolder ("" for the image_folder it was trained with), per record kind when the records have one.
func (tr *Trained) EvaluateFile(ctx context.Context, path, imageFolder string) (Report, error) {
	if imageFolder == "" {
		imageFolder = tr.Config.ImageFolder
	}
	kinds, err := RecordKinds(path)
	if err != nil {
		return Report{}, err
	}
	alpha, err := config.EvalAlpha(tr.Config.Flex.View)
	if err != nil {
		return Report{}, err
	}
	l, err := data.Open(config.EvalDataOptions(tr.Config, tr.Tokenizer, path, imageFolder))
	if err != nil {
		return Report{}, fmt.Errorf("train: evaluate %s: %w", path, err)
	}
	defer l.Close()
	return evaluateKinds(ctx, tr.Weights, l, tr.Tokenizer.EOS(), kinds, alpha)
}
