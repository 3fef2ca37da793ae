package inference

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/eval"

	"github.com/flextrain/flextrain/data"
	"github.com/flextrain/flextrain/data/synth"
)

// testEvaluateByKind: the per-kind counts are the manifest's, they add up to the totals, and the totals
// agree with Evaluate (exactly when no kinds are given).
func testEvaluateByKind(t *testing.T, tr *Trained, m synth.Manifest) {
	ctx := context.Background()
	r, err := tr.EvaluateFile(ctx, m.Val, "")
	if err != nil {
		t.Fatalf("EvaluateFile: %v", err)
	}
	base := evaluateWith(t, tr, m, func(l *data.Loader) (eval.Report, error) {
		return eval.Evaluate(ctx, tr.Weights, l, tr.Tokenizer.EOS(), nil, 1)
	})
	if base.ByKind != nil {
		t.Errorf("Evaluate without kinds reported kinds %v", base.ByKind)
	}
	if math.Abs(r.Loss-base.Loss) > 1e-5*base.Loss || r.Accuracy != base.Accuracy || r.Answers != base.Answers {
		t.Errorf("totals by kind: loss %g, accuracy %g of %d; want Evaluate's %g, %g of %d", r.Loss, r.Accuracy, r.Answers, base.Loss, base.Accuracy, base.Answers)
	}
	var samples, correct int
	for _, kind := range r.Kinds() {
		k := r.ByKind[kind]
		if want := m.Counts["val."+kind]; k.Samples != want {
			t.Errorf("kind %s: %d samples; want the manifest's %d", kind, k.Samples, want)
		}
		if k.Answers > 0 && k.Accuracy != float64(k.Correct)/float64(k.Answers) {
			t.Errorf("kind %s: accuracy %g; want %d/%d", kind, k.Accuracy, k.Correct, k.Answers)
		}
		samples, correct = samples+k.Samples, correct+k.Correct
	}
	if samples != r.Samples || correct != r.Correct || r.Samples != m.Counts["val"] {
		t.Errorf("kinds add up to %d samples, %d correct; totals %d, %d; want both %d samples", samples, correct, r.Samples, r.Correct, m.Counts["val"])
	}
}

// testEvaluateLRView: a run trained on the LR view is evaluated on it (α = 0), not with its untrained copies
// of the HR projections; an hd-seq run is not evaluated at all.
func testEvaluateLRView(t *testing.T, tr *Trained, m synth.Manifest) {
	ctx := context.Background()
	lr := *tr
	lr.Config.Flex.View = "lr"
	got, err := lr.EvaluateFile(ctx, m.Val, "")
	if err != nil {
		t.Fatalf("EvaluateFile of an lr run: %v", err)
	}
	kinds, err := eval.RecordKinds(m.Val)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		alpha float64
		same  bool
	}{{0, true}, {1, false}} {
		want := evaluateWith(t, tr, m, func(l *data.Loader) (eval.Report, error) {
			return eval.Evaluate(ctx, tr.Weights, l, tr.Tokenizer.EOS(), kinds, c.alpha)
		})
		if (got.Loss == want.Loss) != c.same {
			t.Errorf("lr run: loss %g; at α = %g %g: want equal %v", got.Loss, c.alpha, want.Loss, c.same)
		}
	}
	hd := *tr
	hd.Config.Flex.View = "hd-seq"
	if _, err := hd.EvaluateFile(ctx, m.Val, ""); err == nil || !strings.Contains(err.Error(), "hd-seq") {
		t.Errorf("EvaluateFile of an hd-seq run: err = %v; want one naming the view", err)
	}
}

// evaluateWith opens the validation split for one pass and evaluates it with eval.
func evaluateWith(t *testing.T, tr *Trained, m synth.Manifest, evaluate func(*data.Loader) (eval.Report, error)) eval.Report {
	t.Helper()
	l, err := data.Open(config.EvalDataOptions(tr.Config, tr.Tokenizer, m.Val, m.ImageFolder))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := evaluate(l)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
