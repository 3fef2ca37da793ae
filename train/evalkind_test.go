package train

import (
	"context"
	"errors"
	"github.com/flextrain/flextrain/config"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	base := evaluateWith(t, tr, m, func(l *data.Loader) (Report, error) {
		return Evaluate(ctx, tr.Weights, l, tr.Tokenizer.EOS())
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
	kinds, err := RecordKinds(m.Val)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		alpha float64
		same  bool
	}{{0, true}, {1, false}} {
		want := evaluateWith(t, tr, m, func(l *data.Loader) (Report, error) {
			return evaluateKinds(ctx, tr.Weights, l, tr.Tokenizer.EOS(), kinds, c.alpha)
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
func evaluateWith(t *testing.T, tr *Trained, m synth.Manifest, eval func(*data.Loader) (Report, error)) Report {
	t.Helper()
	l, err := data.Open(config.EvalDataOptions(tr.Config, tr.Tokenizer, m.Val, m.ImageFolder))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := eval(l)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRecordKinds(t *testing.T) {
	tests := []struct {
		name, content string
		want          map[string]string
		err           string // in the error; "" for none
	}{
		{"array", `[{"id":"a","kind":"small"},{"id":"b","kind":"large"},{"id":"c"}]`, map[string]string{"a": "small", "b": "large"}, ""},
		{"lines", "{\"id\":\"a\",\"kind\":\"text\"}\n{\"id\":7,\"kind\":\"small\"}\n", map[string]string{"a": "text", "7": "small"}, ""},
		{"repeated id, same kind", `[{"id":"a","kind":"small"},{"id":"a","kind":"small"}]`, map[string]string{"a": "small"}, ""},
		{"repeated id, other kind", `[{"id":"a","kind":"small"},{"id":"a","kind":"large"}]`, nil, `id a has kind "small" and "large"`},
		{"malformed array", `[{"id":"a",}]`, nil, "invalid character"},
		{"malformed line", "{\"id\":\"a\"}\n{\"id\":\n", nil, "record 1"},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "data.json")
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := RecordKinds(path)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("%s: err = %v; want an error naming %s and containing %q", tt.name, err, path, tt.err)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("%s: RecordKinds = %v, %v; want %v", tt.name, got, err, tt.want)
			continue
		}
		for id, k := range tt.want {
			if got[id] != k {
				t.Errorf("%s: kind of %s = %q; want %q", tt.name, id, got[id], k)
			}
		}
	}
	if _, err := RecordKinds(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v; want os.ErrNotExist", err)
	}
}
