package data

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Cursor is the loader's position: the next batch starts at record Position of this rank's order for
// Epoch. It is JSON-serialisable; a checkpoint saves it and Loader.Restore resumes exactly there.
type Cursor struct {
	Epoch    int `json:"epoch"`
	Position int `json:"position"`
}

// valStream is the PCG stream of the validation split, apart from the epoch streams 0, 1, 2, ….
const valStream = 1<<63 | 0x76616c // "val"

// splitRecords holds out a validation set of valSize records (a count when ≥ 1, a fraction of n when in
// (0, 1)), chosen by seed. Both lists are in file order.
func splitRecords(n int, valSize float64, seed uint64) (train, val []int, err error) {
	k := 0
	switch {
	case valSize < 0 || math.IsNaN(valSize):
		return nil, nil, fmt.Errorf("data: val_size must be ≥ 0, got %g", valSize)
	case valSize >= 1:
		k = int(valSize)
	case valSize > 0:
		k = int(math.Round(valSize * float64(n)))
	}
	if k >= n && k > 0 {
		return nil, nil, fmt.Errorf("data: val_size %g holds out %d of %d records, leaving none to train on", valSize, k, n)
	}
	held := make([]bool, n)
	for _, i := range rand.New(rand.NewPCG(seed, valStream)).Perm(n)[:k] {
		held[i] = true
	}
	for i := range n {
		if held[i] {
			val = append(val, i)
		} else {
			train = append(train, i)
		}
	}
	return train, val, nil
}

// orderer decides which records a rank reads in which epoch, and in which order.
type orderer struct {
	records     []int   // record indices of the split, file order
	lengths     []int32 // modality length per record index (whole file)
	images      []bool  // per record index (whole file)
	seed        uint64
	shuffle     bool
	group       bool // LLaVA's group_by_modality_length
	rank, world int
	batch       int
}

// perRank is the number of records each rank reads per epoch (the split padded to a multiple of world).
func (o *orderer) perRank() int { return (len(o.records) + o.world - 1) / o.world }

// epoch returns this rank's record indices for epoch e: the global order, padded by wrapping around to a
// multiple of world, cut in mega-batches of world·batch records of which the rank takes its contiguous
// share (batch records; an even share of the shorter last one).
func (o *orderer) epoch(e int) []int {
	global := o.global(e)
	for i := 0; len(global)%o.world != 0; i++ {
		global = append(global, global[i%len(o.records)])
	}
	mega := o.world * o.batch
	var mine []int
	for start := 0; start < len(global); start += mega {
		m := global[start:min(start+mega, len(global))]
		share := len(m) / o.world
		mine = append(mine, m[o.rank*share:(o.rank+1)*share]...)
	}
	return mine
}

// global is the order of the whole split for epoch e, before sharding.
func (o *orderer) global(e int) []int {
	if !o.shuffle {
		return slices.Clone(o.records)
	}
	rng := rand.New(rand.NewPCG(o.seed, uint64(e)))
	if o.group {
		return o.modalityGrouped(rng)
	}
	out := make([]int, len(o.records))
	for i, j := range rng.Perm(len(o.records)) {
		out[i] = o.records[j]
	}
	return out
}

// modalityGrouped is LLaVA's get_modality_length_grouped_indices: image and text-only records go to
// separate mega-batches, each sorted by length (longest first) and balanced over ranks; mega-batches are
// shuffled; the two leftover tails form a last mixed mega-batch.
func (o *orderer) modalityGrouped(rng *rand.Rand) []int {
	var mm, lang []int
	for _, r := range o.records {
		if o.images[r] {
			mm = append(mm, r)
		} else {
			lang = append(lang, r)
		}
	}
	if len(mm) == 0 || len(lang) == 0 {
		return o.lengthGrouped(o.records, rng)
	}
	mega := o.world * o.batch
	mmMega := chunk(o.lengthGrouped(mm, rng), mega)
	langMega := chunk(o.lengthGrouped(lang, rng), mega)
	tail := append(slices.Clone(mmMega[len(mmMega)-1]), langMega[len(langMega)-1]...)
	megas := append(mmMega[:len(mmMega)-1:len(mmMega)-1], langMega[:len(langMega)-1]...)
	perm := rng.Perm(len(megas))
	var out []int
	for _, i := range perm {
		out = append(out, megas[i]...)
	}
	slices.Sort(tail)
	return append(out, tail...)
}

// lengthGrouped is LLaVA's get_length_grouped_indices: a random permutation cut in mega-batches, each
// sorted by length, longest first, then split into world chunks of similar total length.
func (o *orderer) lengthGrouped(recs []int, rng *rand.Rand) []int {
	perm := rng.Perm(len(recs))
	shuffled := make([]int, len(recs))
	for i, j := range perm {
		shuffled[i] = recs[j]
	}
	var out []int
	for _, m := range chunk(shuffled, o.world*o.batch) {
		slices.SortStableFunc(m, func(a, b int) int { return int(o.lengths[b]) - int(o.lengths[a]) })
		for _, c := range o.evenChunks(m) {
			out = append(out, c...)
		}
	}
	return out
}

// evenChunks is LLaVA's split_to_even_chunks: greedy assignment to the chunk with the smallest total
// length, a chunk closing once full; strided when the mega-batch does not divide evenly.
func (o *orderer) evenChunks(m []int) [][]int {
	chunks := make([][]int, o.world)
	if len(m)%o.world != 0 {
		for i, r := range m {
			chunks[i%o.world] = append(chunks[i%o.world], r)
		}
		return chunks
	}
	per := len(m) / o.world
	totals := make([]float64, o.world)
	for _, r := range m {
		k := slices.Index(totals, slices.Min(totals))
		chunks[k] = append(chunks[k], r)
		totals[k] += float64(o.lengths[r])
		if len(chunks[k]) == per {
			totals[k] = math.Inf(1)
		}
	}
	return chunks
}

// chunk cuts s into consecutive pieces of size n (the last may be shorter); always at least one piece.
func chunk(s []int, n int) [][]int {
	out := [][]int{}
	for i := 0; i < len(s); i += n {
		out = append(out, s[i:min(i+n, len(s))])
	}
	if len(out) == 0 {
		out = append(out, nil)
	}
	return out
}
