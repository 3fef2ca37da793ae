package data

import (
	"slices"
	"testing"
)

// testOrderer has n records; every third one is text-only, lengths vary.
func testOrderer(n, world, batch int, group bool) *orderer {
	o := &orderer{records: allRecords(n), seed: 3, shuffle: true, group: group, world: world, batch: batch,
		lengths: make([]int32, n), images: make([]bool, n)}
	for i := range n {
		o.images[i] = i%3 != 0
		o.lengths[i] = int32(1 + (i*7)%23)
		if o.images[i] {
			o.lengths[i] += 128
		}
	}
	return o
}

func TestEpochOrderDeterministic(t *testing.T) {
	o := testOrderer(50, 1, 4, false)
	e0, again, e1 := o.epoch(0), o.epoch(0), o.epoch(1)
	if !slices.Equal(e0, again) {
		t.Errorf("epoch 0 twice: %v vs %v", e0, again)
	}
	if slices.Equal(e0, e1) {
		t.Errorf("epochs 0 and 1 equal: %v", e0)
	}
	for e, order := range [][]int{e0, e1} {
		if got := slices.Sorted(slices.Values(order)); !slices.Equal(got, allRecords(50)) {
			t.Errorf("epoch %d is not a permutation: %v", e, got)
		}
	}
	o.shuffle = false
	if got := o.epoch(5); !slices.Equal(got, allRecords(50)) {
		t.Errorf("no shuffle: got %v; want file order", got)
	}
}

func TestShardsCoverAndBalance(t *testing.T) {
	tests := []struct{ n, world, batch int }{{50, 2, 4}, {50, 3, 4}, {7, 4, 2}, {12, 3, 4}}
	for _, tt := range tests {
		for _, group := range []bool{false, true} {
			var all []int
			for rank := range tt.world {
				o := testOrderer(tt.n, tt.world, tt.batch, group)
				o.rank = rank
				mine := o.epoch(2)
				if got, want := len(mine), o.perRank(); got != want {
					t.Errorf("%+v group=%v rank %d: %d records; want %d", tt, group, rank, got, want)
				}
				all = append(all, mine...)
			}
			padded := (tt.n + tt.world - 1) / tt.world * tt.world
			uniq := slices.Compact(slices.Sorted(slices.Values(all)))
			if len(all) != padded || !slices.Equal(uniq, allRecords(tt.n)) {
				t.Errorf("%+v group=%v: ranks read %d records covering %d; want %d covering all %d", tt, group, len(all), len(uniq), padded, tt.n)
			}
		}
	}
}

func TestModalityGroupedBatches(t *testing.T) {
	o := testOrderer(61, 2, 4, true)
	global := o.global(0)
	if got := slices.Sorted(slices.Values(global)); !slices.Equal(got, allRecords(61)) {
		t.Fatalf("not a permutation: %v", got)
	}
	mega := o.world * o.batch
	// All mega-batches but the mixed tail hold one modality only. As in LLaVA the tail is the last
	// mega-batch of each modality (a full one when the count divides), sorted by index.
	last := func(k int) int { return (k-1)%mega + 1 }
	nImage := 61 - (61+2)/3
	tail := last(nImage) + last(61-nImage)
	for start := 0; start+mega <= len(global)-tail; start += mega {
		m := global[start : start+mega]
		for _, r := range m {
			if o.images[r] != o.images[m[0]] {
				t.Fatalf("mega-batch at %d mixes modalities: %v", start, m)
			}
		}
		for c := range o.world { // each rank's chunk is sorted longest first
			chunk := m[c*o.batch : (c+1)*o.batch]
			if !slices.IsSortedFunc(chunk, func(a, b int) int { return int(o.lengths[b]) - int(o.lengths[a]) }) {
				t.Errorf("chunk %v not sorted by length", chunk)
			}
		}
	}
	if last := global[len(global)-tail:]; !slices.IsSorted(last) {
		t.Errorf("tail %v: want sorted indices", last)
	}
}

func TestSplitRecords(t *testing.T) {
	tests := []struct {
		n       int
		size    float64
		wantVal int
		wantErr bool
	}{
		{100, 0, 0, false}, {100, 10, 10, false}, {100, 0.05, 5, false}, {100, 0.999, 0, true}, {3, 3, 0, true}, {10, -1, 0, true},
	}
	for _, tt := range tests {
		train, val, err := splitRecords(tt.n, tt.size, 11)
		if (err != nil) != tt.wantErr {
			t.Errorf("n=%d size=%g: err %v; want error %v", tt.n, tt.size, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if len(val) != tt.wantVal || len(train)+len(val) != tt.n {
			t.Errorf("n=%d size=%g: %d train, %d val; want %d val", tt.n, tt.size, len(train), len(val), tt.wantVal)
		}
		if got := slices.Sorted(slices.Values(append(slices.Clone(train), val...))); !slices.Equal(got, allRecords(tt.n)) {
			t.Errorf("n=%d size=%g: train and val do not partition the records", tt.n, tt.size)
		}
	}
	_, a, _ := splitRecords(100, 10, 1)
	_, b, _ := splitRecords(100, 10, 1)
	_, c, _ := splitRecords(100, 10, 2)
	if !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Errorf("val by seed: seed 1 twice %v, %v; seed 2 %v", a, b, c)
	}
}
