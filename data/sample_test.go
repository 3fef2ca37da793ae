package data

import (
	"slices"
	"testing"

	"github.com/flextrain/flextrain/internal/llava"
)

func TestTruncate(t *testing.T) {
	const I, X = llava.ImageTokenID, llava.IgnoreIndex
	tests := []struct {
		name              string
		ids, labels       []int
		maxLen, n         int
		wantIDs           []int
		wantTrunc, tooBig bool
	}{
		{"fits", []int{1, 5, 6}, []int{X, 5, 6}, 3, 4, []int{1, 5, 6}, false, false},
		{"no limit", []int{1, 5, 6}, []int{X, 5, 6}, 0, 4, []int{1, 5, 6}, false, false},
		{"image counts n", []int{1, I, 5, 6}, []int{X, X, 5, 6}, 6, 4, []int{1, I, 5}, true, false},
		{"image fits exactly", []int{1, I, 5}, []int{X, X, 5}, 6, 4, []int{1, I, 5}, false, false},
		{"image cut", []int{1, 2, 3, I, 5}, []int{X, X, X, X, 5}, 5, 4, nil, false, true},
		{"text cut", []int{1, 2, 3, 4, 5}, []int{X, 2, 3, 4, 5}, 2, 4, []int{1, 2}, true, false},
	}
	for _, tt := range tests {
		ids, labels, trunc, err := truncate(tt.ids, tt.labels, tt.maxLen, tt.n)
		if (err != nil) != tt.tooBig || trunc != tt.wantTrunc || !slices.Equal(ids, tt.wantIDs) {
			t.Errorf("%s: got %v, truncated %v, err %v; want %v, %v, error %v", tt.name, ids, trunc, err, tt.wantIDs, tt.wantTrunc, tt.tooBig)
		}
		if err == nil && len(labels) != len(ids) {
			t.Errorf("%s: %d labels for %d ids", tt.name, len(labels), len(ids))
		}
		if err == nil && SeqLen(ids, tt.n) > tt.maxLen && tt.maxLen > 0 {
			t.Errorf("%s: expanded length %d over %d", tt.name, SeqLen(ids, tt.n), tt.maxLen)
		}
	}
}

func TestCollate(t *testing.T) {
	const pad = 9
	px := &Pixels{LR: []float32{1}, HR: []float32{2}, OriSize: [2]int{3, 4}}
	b := collate([]*Sample{
		{ID: "a", InputIDs: []int{1, llava.ImageTokenID, 5}, Labels: []int{llava.IgnoreIndex, llava.IgnoreIndex, 5}, Pixels: px, Image: "x"},
		{ID: "b", InputIDs: []int{1, 7}, Labels: []int{llava.IgnoreIndex, 7}},
	}, pad)
	want := &Batch{
		IDs:           []string{"a", "b"},
		InputIDs:      [][]int{{1, llava.ImageTokenID, 5}, {1, 7, pad}},
		AttentionMask: [][]int{{1, 1, 1}, {1, 1, 0}},
		Labels:        [][]int{{llava.IgnoreIndex, llava.IgnoreIndex, 5}, {llava.IgnoreIndex, 7, llava.IgnoreIndex}},
		LRPixels:      [][]float32{{1}, nil},
		HRPixels:      [][]float32{{2}, nil},
		OriSizes:      [][2]int{{3, 4}, {0, 0}},
	}
	if !equalBatch(b, want) {
		t.Errorf("got %+v; want %+v", b, want)
	}
}

func equalBatch(a, b *Batch) bool {
	eq2 := func(x, y [][]int) bool { return slices.EqualFunc(x, y, slices.Equal) }
	return slices.Equal(a.IDs, b.IDs) && eq2(a.InputIDs, b.InputIDs) && eq2(a.AttentionMask, b.AttentionMask) &&
		eq2(a.Labels, b.Labels) && slices.EqualFunc(a.LRPixels, b.LRPixels, slices.Equal) &&
		slices.EqualFunc(a.HRPixels, b.HRPixels, slices.Equal) && slices.Equal(a.OriSizes, b.OriSizes)
}
