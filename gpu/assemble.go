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

// embedSources are the rows of ClassPosEmbed's output for images of n patches each, as Assemble's sources:
// per image the class embedding (row 0 of the image table), then its patches (rows of the token table).
func embedSources(images, n int) []ops.Source {
	src := make([]ops.Source, 0, images*(n+1))
	for k := range images {
		src = append(src, ops.Source{Kind: ops.FromImage})
		for i := range n {
			src = append(src, ops.Source{Kind: ops.FromToken, Index: k*n + i})
		}
	}
	return src
}

// embedGradSources give ClassPosEmbed's gradient for input which (0 patch, 1 class, 2 position), over the
// upstream rows [images·(n+1), C], as the gradient of a table of Assemble's (scatter_rows): the rows' sources,
// the table's kind and its shape. The patch table's rows are each fed once, the class row by every image's
// first row, position row t by row t of every image, in order (a −0 upstream value comes out +0).
func embedGradSources(images, n, C, which int) (src []ops.Source, kind ops.SourceKind, shape []int) {
	src = embedSources(images, n)
	switch which {
	case 0:
		return src, ops.FromToken, []int{images * n, C}
	case 1:
		return src, ops.FromImage, []int{C}
	}
	for r := range src {
		src[r] = ops.Source{Kind: ops.FromToken, Index: r % (n + 1)}
	}
	return src, ops.FromToken, []int{n + 1, C}
}
