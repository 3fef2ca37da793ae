package gpu

import "github.com/flextrain/flextrain/model/ops"

// The host's part of the device's assembly: each row's table and index, and for a table's gradient, which
// rows fed each of its rows.

// sourceArrays are the kinds (1 tokens, 2 image features, 3 HR features, 0 padding) and indexes of src, as
// gather_rows reads them.
func sourceArrays(src []ops.Source) (kind, index []int64) {
	kind, index = make([]int64, len(src)), make([]int64, len(src))
	for r, s := range src {
		switch s.Kind {
		case ops.FromToken:
			kind[r] = 1
		case ops.FromImage:
			kind[r] = 2
		case ops.FromHR:
			kind[r] = 3
		}
		index[r] = int64(s.Index)
	}
	return kind, index
}

// feeders lists, for each of the rows of the table that src's rows of kind read, the rows that read it, in
// increasing order, as CSR: table row t's feeders are from[start[t]:start[t+1]].
func feeders(src []ops.Source, kind ops.SourceKind, rows int) (start, from []int64) {
	count := make([]int64, rows+1)
	for _, s := range src {
		if s.Kind == kind {
			count[s.Index+1]++
		}
	}
	for t := range rows {
		count[t+1] += count[t]
	}
	start, from = count, make([]int64, count[rows])
	next := append([]int64(nil), start[:rows]...)
	for r, s := range src {
		if s.Kind == kind {
			from[next[s.Index]] = int64(r)
			next[s.Index]++
		}
	}
	return start, from
}
