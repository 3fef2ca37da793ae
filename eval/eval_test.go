package eval

import (
	"slices"
	"testing"

	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model"
)

// TestSplitAnswer cuts a sample before its first supervised token: the prompt keeps the tokens before it,
// the answer runs to the end-of-sequence token.
func TestSplitAnswer(t *testing.T) {
	const eos, ig = 2, llava.IgnoreIndex
	for _, tc := range []struct {
		name         string
		ids, labels  []int
		prompt, want []int // prompt nil: not scorable
	}{
		{"answer then eos", []int{1, 10, 11, 12, 13, 2, 0}, []int{ig, ig, ig, 12, 13, 2, ig}, []int{1, 10, 11}, []int{12, 13}},
		{"answer cut by padding", []int{1, 10, 12, 0}, []int{ig, ig, 12, ig}, []int{1, 10}, []int{12}},
		{"only eos supervised", []int{1, 10, 2}, []int{ig, ig, 2}, []int{1, 10}, nil},
		{"nothing supervised", []int{1, 10, 11}, []int{ig, ig, ig}, nil, nil},
		{"label at 0 is never a target", []int{1, 10}, []int{1, ig}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &model.Batch[float32]{InputIDs: [][]int{tc.ids}, AttentionMask: [][]int{allOnes(len(tc.ids))}, Labels: [][]int{tc.labels},
				LRPixels: [][]float32{nil}, HRPixels: [][]float32{nil}, OriSizes: [][2]int{{0, 0}}}
			p, answer := SplitAnswer(b, 0, eos)
			if tc.prompt == nil {
				if p != nil {
					t.Fatalf("prompt = %v; want none", p.InputIDs)
				}
				return
			}
			if p == nil || !slices.Equal(p.InputIDs[0], tc.prompt) || !slices.Equal(answer, tc.want) {
				t.Fatalf("got prompt %v, answer %v; want %v, %v", promptIDs(p), answer, tc.prompt, tc.want)
			}
			if !slices.Equal(p.AttentionMask[0], allOnes(len(tc.prompt))) || slices.ContainsFunc(p.Labels[0], func(l int) bool { return l != ig }) {
				t.Errorf("prompt mask %v, labels %v; want all ones, all ignored", p.AttentionMask[0], p.Labels[0])
			}
		})
	}
}

func allOnes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 1
	}
	return out
}

func promptIDs(b *model.Batch[float32]) any {
	if b == nil {
		return nil
	}
	return b.InputIDs[0]
}

// TestEqualAnswer compares a greedy answer, cut at the end-of-sequence token, with the reference.
func TestEqualAnswer(t *testing.T) {
	const eos = 2
	for _, tc := range []struct {
		got, want []int
		equal     bool
	}{
		{[]int{5, 6, 2}, []int{5, 6}, true},
		{[]int{5, 6, 2, 9}, []int{5, 6}, true},
		{[]int{5, 7, 2}, []int{5, 6}, false},
		{[]int{5, 2}, []int{5, 6}, false},
		{[]int{5, 6, 7}, []int{5, 6}, false},
		{[]int{2}, nil, true},
	} {
		if got := equalAnswer(tc.got, tc.want, eos); got != tc.equal {
			t.Errorf("equalAnswer(%v, %v) = %v; want %v", tc.got, tc.want, got, tc.equal)
		}
	}
}

// TestReportReduce: two reports of halves of a file, reduced (a sum over both, as an all-reduce gives each
// process), equal the report of the whole, in total and by kind.
func TestReportReduce(t *testing.T) {
	half := func(small, large, none KindMetrics) Report {
		return report(map[string]*KindMetrics{"small": &small, "large": &large, "": &none})
	}
	a := half(KindMetrics{lossSum: 6, tokens: 3, Samples: 2, Answers: 2, Correct: 1},
		KindMetrics{lossSum: 2, tokens: 2, Samples: 1, Answers: 1, Correct: 1}, KindMetrics{lossSum: 1, tokens: 1, Samples: 1})
	b := half(KindMetrics{lossSum: 3, tokens: 3, Samples: 2, Answers: 1},
		KindMetrics{}, KindMetrics{lossSum: 5, tokens: 1, Samples: 1, Answers: 1, Correct: 1})
	whole := half(KindMetrics{lossSum: 9, tokens: 6, Samples: 4, Answers: 3, Correct: 1},
		KindMetrics{lossSum: 2, tokens: 2, Samples: 1, Answers: 1, Correct: 1}, KindMetrics{lossSum: 6, tokens: 2, Samples: 2, Answers: 1, Correct: 1})
	kinds := KindsOf(map[string]string{"x": "small", "y": "large", "z": "small"})
	var theirs []float64 // b's sums, as the other process contributes them
	if _, err := b.Reduce(kinds, func(buf []float64) error { theirs = append(theirs, buf...); return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := a.Reduce(kinds, func(buf []float64) error {
		for i := range buf {
			buf[i] += theirs[i]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Loss != whole.Loss || got.Samples != whole.Samples || got.Answers != whole.Answers || got.Correct != whole.Correct {
		t.Errorf("reduced totals %+v; want %+v", got, whole)
	}
	for _, k := range []string{"small", "large"} {
		if g, w := got.ByKind[k], whole.ByKind[k]; g.Loss != w.Loss || g.Samples != w.Samples || g.Accuracy != w.Accuracy {
			t.Errorf("kind %s: %+v; want %+v", k, g, w)
		}
	}
}
