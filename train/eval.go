package train

import (
	"context"
	"errors"
	"fmt"
	"github.com/flextrain/flextrain/config"
	"time"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/model"
)

// maxAnswer is the longest answer, in tokens, whose exact match is scored: longer answers are free text.
const maxAnswer = 16

// evaluate runs the held-out split at the run's evaluation α (config.EvalAlpha) and records the result; the lowest
// loss is the best metric.
func (t *trainer[T]) evaluate(ctx context.Context) error {
	l, err := t.evalLoader()
	if errors.Is(err, data.ErrEmpty) {
		return nil // no held-out split configured
	}
	if err != nil {
		return fmt.Errorf("train: eval data: %w", err)
	}
	defer l.Close()
	start := time.Now()
	kinds, _ := RecordKinds(t.evalPath())         // records without a kind are evaluated as a whole
	alpha, _ := config.EvalAlpha(t.cfg.Flex.View) // validated: eval_steps > 0 only on views that evaluate
	m, err := evaluateKinds(ctx, t.weights, l, t.tok.EOS(), kinds, alpha)
	if err != nil {
		return err
	}
	if t.state.BestMetric == nil || m.Loss < *t.state.BestMetric {
		loss := m.Loss
		t.state.BestMetric, t.state.BestStep = &loss, t.state.Step
	}
	t.log.info("evaluated", "seconds", time.Since(start).Seconds())
	return t.log.eval(t.state.Step, m)
}

// evalLoader opens eval_data_path, or the held-out part of data_path, for one ordered pass.
func (t *trainer[T]) evalLoader() (*data.Loader, error) {
	if t.cfg.EvalDataPath != "" {
		return data.Open(config.EvalDataOptions(t.cfg, t.tok, t.cfg.EvalDataPath, t.cfg.ImageFolder))
	}
	if t.cfg.ValSize <= 0 {
		return nil, data.ErrEmpty
	}
	o := t.dataOptions()
	o.Shuffle, o.Once, o.GroupByModalityLength, o.Split = false, true, false, data.SplitVal
	return data.Open(o)
}

// evalPath is the data file evaluation reads.
func (t *trainer[T]) evalPath() string {
	if t.cfg.EvalDataPath != "" {
		return t.cfg.EvalDataPath
	}
	return t.cfg.DataPath
}

// Evaluate reads the loader to its end and returns the mean loss over supervised tokens and the exact-match
// accuracy of greedy answers (FlexAttention in inference mode, α = 1). eos ends a generated answer.
func Evaluate(ctx context.Context, w *model.Weights, l *data.Loader, eos int) (Report, error) {
	return EvaluateByKind(ctx, w, l, eos, nil)
}

// batchLoss is the forward-only loss of a batch with blend weight alpha and its number of supervised tokens.
func batchLoss(w *model.Weights, b *model.Batch, alpha float64) (float64, int, error) {
	g, err := model.Build(w, b, model.Options{Mode: model.Train, Alpha: alpha})
	if err != nil {
		return 0, 0, err
	}
	defer g.Close()
	if err := g.Run(); err != nil {
		return 0, 0, err
	}
	return g.Loss(), supervised(b.Labels), nil
}

// exactMatches decodes the first answer of every sample whose answer is short and counts those whose
// greedy answer equals the reference token for token.
func exactMatches(w *model.Weights, b *model.Batch, eos int, alpha float64) (correct, scored int, err error) {
	for s := range b.InputIDs {
		prompt, answer := splitAnswer(b, s, eos)
		if prompt == nil || len(answer) > maxAnswer {
			continue
		}
		got, err := model.Generate(w, prompt, len(answer)+1, eos, alpha)
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

// splitAnswer cuts sample s before its first supervised token: the prompt as a batch of one, and the answer
// tokens up to (not including) eos. A sample without supervised tokens has no prompt.
func splitAnswer(b *model.Batch, s, eos int) (*model.Batch, []int) {
	ids, labels := b.InputIDs[s], b.Labels[s]
	start := -1
	for i := 1; i < len(labels); i++ {
		if labels[i] != model.IgnoreIndex {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, nil
	}
	var answer []int
	for i := start; i < len(labels) && labels[i] != model.IgnoreIndex && labels[i] != eos; i++ {
		answer = append(answer, labels[i])
	}
	mask, lab := make([]int, start), make([]int, start)
	for i := range mask {
		mask[i], lab[i] = 1, model.IgnoreIndex
	}
	return &model.Batch{InputIDs: [][]int{ids[:start]}, AttentionMask: [][]int{mask}, Labels: [][]int{lab},
		LRPixels: b.LRPixels[s : s+1], HRPixels: b.HRPixels[s : s+1], OriSizes: b.OriSizes[s : s+1]}, answer
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
