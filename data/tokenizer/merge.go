package tokenizer

// symbolList is a word being merged: a doubly linked list over id, kept in arrays so that a merge is O(1)
// and a 10 kB word with no pre-tokenizer (LLaMA) costs O(n log n), not a rescan per merge.
type symbolList struct {
	id         []int32
	prev, next []int32 // -1 at the ends
	alive      []bool  // false once merged into its left neighbour
}

func (w *symbolList) link() {
	n := len(w.id)
	w.prev, w.next, w.alive = make([]int32, n), make([]int32, n), make([]bool, n)
	for i := range n {
		w.prev[i], w.next[i], w.alive[i] = int32(i-1), int32(i+1), true
	}
	if n > 0 {
		w.next[n-1] = -1
	}
}

// candidate is a pair that could merge, packed as rank<<32 | left so that the heap compares one integer:
// lowest rank first, then leftmost, as Hugging Face and SentencePiece order them.
type candidate uint64

func newCandidate(rank, left int32) candidate {
	return candidate(uint64(uint32(rank))<<32 | uint64(uint32(left)))
}

func (c candidate) rank() int32 { return int32(c >> 32) }
func (c candidate) left() int32 { return int32(uint32(c)) }

// candidateHeap is a binary min-heap; typed rather than container/heap to keep the hot loop free of
// interface calls.
type candidateHeap []candidate

func (h *candidateHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[i] >= s[p] {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candidateHeap) pop() candidate {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		m, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s[l] < s[m] {
			m = l
		}
		if r < len(s) && s[r] < s[m] {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// pairAt returns the merge of the symbol at left with its right neighbour, if there is one.
func (w *symbolList) pairAt(merges map[uint64]merge, left int32) (merge, int32, bool) {
	if left < 0 || !w.alive[left] {
		return merge{}, -1, false
	}
	right := w.next[left]
	if right < 0 {
		return merge{}, -1, false
	}
	m, ok := merges[pairKey(w.id[left], w.id[right])]
	return m, right, ok
}

// offer pushes the pair starting at symbol left when it has a merge.
func (w *symbolList) offer(h *candidateHeap, merges map[uint64]merge, left int32) {
	if m, _, ok := w.pairAt(merges, left); ok {
		h.push(newCandidate(m.rank, left))
	}
}

// mergeAll applies merges, best rank first, until none applies.
func (w *symbolList) mergeAll(merges map[uint64]merge) {
	h := make(candidateHeap, 0, len(w.id))
	for i := range w.id {
		w.offer(&h, merges, int32(i))
	}
	for len(h) > 0 {
		c := h.pop()
		left := c.left()
		// A stale candidate no longer names the pair now at left. An equal rank means the same pair, or
		// (SentencePiece models, whose pairs making pieces of equal score share a rank) a pair of that rank
		// whose own candidate, offered when it formed, has this very key: merging it now is the same.
		m, right, ok := w.pairAt(merges, left)
		if !ok || m.rank != c.rank() {
			continue
		}
		w.id[left] = m.id
		w.alive[right] = false
		nxt := w.next[right]
		w.next[left] = nxt
		if nxt >= 0 {
			w.prev[nxt] = left
		}
		w.offer(&h, merges, w.prev[left])
		w.offer(&h, merges, left)
	}
}
