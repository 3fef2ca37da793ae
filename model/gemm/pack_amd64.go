//go:build amd64 && !purego

package gemm

// gatherS and gatherD are the AVX-512 transposing packers of gather_amd64.s.
//
//go:noescape
func gatherS(dst, src *float32, idx *[32]int32, kb, step, g1, g2, s1, s2 int)

//go:noescape
func gatherD(dst, src *float64, idx *[32]int32, kb, step, g1, g2, s1, s2 int)

// copyS and copyD are the AVX-512 contiguous packers of pack_amd64.s; ld and step are in bytes.
//
//go:noescape
func copyS(dst, src *float32, ld, kb, step, g1, g2, s1, s2 int)

//go:noescape
func copyD(dst, src *float64, ld, kb, step, g1, g2, s1, s2 int)

// copyRowsS is packRows for float32 panels of w ≤ 32 values per group, with masked vector moves.
func copyRowsS(panel, src []float32, ld, width, kb, w int) {
	if w > 32 || kb == 0 {
		packRows(panel, src, ld, width, kb, w)
		return
	}
	_, _ = panel[w*kb-1], src[(kb-1)*ld+width-1] // the assembly stays inside both
	g1, g2, s1, s2 := laneMasks(width, w, 16)
	copyS(&panel[0], &src[0], 4*ld, kb, 4*w, g1, g2, s1, s2)
}

// copyRowsD is packRows for float64 panels of w ≤ 16 values per group, with masked vector moves.
func copyRowsD(panel, src []float64, ld, width, kb, w int) {
	if w > 16 || kb == 0 {
		packRows(panel, src, ld, width, kb, w)
		return
	}
	_, _ = panel[w*kb-1], src[(kb-1)*ld+width-1]
	g1, g2, s1, s2 := laneMasks(width, w, 8)
	copyD(&panel[0], &src[0], 8*ld, kb, 8*w, g1, g2, s1, s2)
}

// transS14 and transS16 are the AVX-512 transposing packers of kernels_amd64.s.
//
//go:noescape
func transS14(dst, src *float32, ld, blocks, step int)

//go:noescape
func transS16(dst, src *float32, ld, blocks, step int)

// transColsS is packCols for the float32 AVX-512 kernel: whole panels of 14 rows of A or
// 32 columns of B are transposed 16 groups at a time in registers, the rest is gathered.
func transColsS(panel, src []float32, ld, width, kb, w int) {
	blocks := kb / 16
	if blocks == 0 || width != w || (w != 14 && w != 32) {
		gatherColsS(panel, src, ld, width, kb, w)
		return
	}
	_, _ = panel[w*kb-1], src[(width-1)*ld+kb-1] // the assembly stays inside both
	if w == 14 {
		transS14(&panel[0], &src[0], ld, blocks, 4*w)
	} else {
		transS16(&panel[0], &src[0], ld, blocks, 4*w)
		transS16(&panel[16], &src[16*ld], ld, blocks, 4*w)
	}
	if done := 16 * blocks; done < kb {
		gatherColsS(panel[done*w:], src[done:], ld, width, kb-done, w)
	}
}

// gatherColsS is packCols for float32 panels of w ≤ 32 values per group, using AVX-512 gathers.
func gatherColsS(panel, src []float32, ld, width, kb, w int) {
	idx, g1, g2, s1, s2, ok := gatherArgs(ld, width, w, 16)
	if !ok || kb == 0 {
		packCols(panel, src, ld, width, kb, w)
		return
	}
	_, _ = panel[w*kb-1], src[(width-1)*ld+kb-1] // the assembly stays inside both
	gatherS(&panel[0], &src[0], &idx, kb, 4*w, g1, g2, s1, s2)
}

// gatherColsD is packCols for float64 panels of w ≤ 16 values per group, using AVX-512 gathers.
func gatherColsD(panel, src []float64, ld, width, kb, w int) {
	idx, g1, g2, s1, s2, ok := gatherArgs(ld, width, w, 8)
	if !ok || kb == 0 {
		packCols(panel, src, ld, width, kb, w)
		return
	}
	_, _ = panel[w*kb-1], src[(width-1)*ld+kb-1]
	gatherD(&panel[0], &src[0], &idx, kb, 8*w, g1, g2, s1, s2)
}

// gatherArgs returns the element offsets q·ld of the group values and the lane masks of the
// two gathers (width values) and the two stores (w values) of lanes lanes each. ok is false
// when the group does not fit two registers or an offset does not fit 32 bits.
func gatherArgs(ld, width, w, lanes int) (idx [32]int32, g1, g2, s1, s2 int, ok bool) {
	if w > 2*lanes || (width-1)*ld >= 1<<31 {
		return idx, 0, 0, 0, 0, false
	}
	for q := range width {
		idx[q] = int32(q * ld)
	}
	g1, g2, s1, s2 = laneMasks(width, w, lanes)
	return idx, g1, g2, s1, s2, true
}

// laneMasks returns the masks of the first width lanes (loads) and of the first w lanes
// (stores) over two registers of lanes lanes each.
func laneMasks(width, w, lanes int) (g1, g2, s1, s2 int) {
	mask := func(n int) int { return 1<<min(max(n, 0), lanes) - 1 }
	return mask(width), mask(width - lanes), mask(w), mask(w - lanes)
}
