package gemm

// packFunc fills a panel with kb groups of w values, taking width ≤ w values per group from
// src (group p at src[p·ld:] for packRows, value q of every group at src[q·ld:] for packCols)
// and zeroing the rest.
type packFunc[T float] func(panel, src []T, ld, width, kb, w int)

// packA copies rows ic… (mb of them) and columns pc… (kb of them) of op(A) into dst as
// panels of mr rows: panel r starts at r·mr·kb and holds, for each p, the mr values of
// column p. Rows past mb are zero so the kernel can always compute whole tiles.
func packA[T float](dst []T, tA bool, a []T, lda, ic, pc, mb, kb, mr int, contiguous, strided packFunc[T]) {
	if tA {
		packContiguous(dst, a[pc*lda+ic:], lda, mb, kb, mr, contiguous)
		return
	}
	for ir := 0; ir < mb; ir += mr {
		strided(dst[ir*kb:][:mr*kb], a[(ic+ir)*lda+pc:], lda, min(mr, mb-ir), kb, mr)
	}
}

// packB copies rows pc… (kb of them) and columns jc… (nb of them) of op(B) into dst as
// panels of nr columns: panel j starts at j·nr·kb and holds, for each p, the nr values of
// row p. Columns past nb are zero. 16-bit values are widened as they are packed.
func packB[T float](dst []T, src matB[T], pc, jc, kb, nb, nr int, contiguous, strided packFunc[T]) {
	switch {
	case src.h != nil:
		packHalf(any(dst).([]float32), src.h, src.kind, src.t, src.ld, pc, jc, kb, nb, nr, any(strided).(packFunc[float32]))
	case !src.t:
		packContiguous(dst, src.b[pc*src.ld+jc:], src.ld, nb, kb, nr, contiguous)
	default:
		for jr := 0; jr < nb; jr += nr {
			strided(dst[jr*kb:][:nr*kb], src.b[(jc+jr)*src.ld+pc:], src.ld, min(nr, nb-jr), kb, nr)
		}
	}
}

// packContiguous packs kb groups of width values, group p being src[p·ld:][:width], into
// panels of w values per group (panel r holds values r·w…). It walks 16 groups at a time
// across all panels so that the source rows are read while they are in L1.
func packContiguous[T float](dst, src []T, ld, width, kb, w int, contiguous packFunc[T]) {
	const chunk = 16
	for p0 := 0; p0 < kb; p0 += chunk {
		np := min(chunk, kb-p0)
		for r := 0; r < width; r += w {
			contiguous(dst[r*kb+p0*w:], src[p0*ld+r:], ld, min(w, width-r), np, w)
		}
	}
}

// packRows fills a panel whose groups are stored contiguously in src: group p is
// src[p·ld : p·ld+width], padded with zeros to w values.
func packRows[T float](panel, src []T, ld, width, kb, w int) {
	for p := range kb {
		d := panel[p*w:][:w]
		copy(d, src[p*ld:][:width])
		clear(d[width:])
	}
}

// packRowsS is packRows for float32 whose whole groups of the kernels' widths are fixed-size
// copies: a few vector moves instead of a call to memmove per group.
func packRowsS(panel, src []float32, ld, width, kb, w int) {
	switch {
	case width == 14 && w == 14:
		for p := range kb {
			*(*[14]float32)(panel[p*w:]) = *(*[14]float32)(src[p*ld:])
		}
	case width == 32 && w == 32:
		for p := range kb {
			*(*[32]float32)(panel[p*w:]) = *(*[32]float32)(src[p*ld:])
		}
	case width == 16 && w == 16:
		for p := range kb {
			*(*[16]float32)(panel[p*w:]) = *(*[16]float32)(src[p*ld:])
		}
	default:
		packRows(panel, src, ld, width, kb, w)
	}
}

// packRowsD is packRowsS for float64.
func packRowsD(panel, src []float64, ld, width, kb, w int) {
	switch {
	case width == 14 && w == 14:
		for p := range kb {
			*(*[14]float64)(panel[p*w:]) = *(*[14]float64)(src[p*ld:])
		}
	case width == 16 && w == 16:
		for p := range kb {
			*(*[16]float64)(panel[p*w:]) = *(*[16]float64)(src[p*ld:])
		}
	case width == 8 && w == 8:
		for p := range kb {
			*(*[8]float64)(panel[p*w:]) = *(*[8]float64)(src[p*ld:])
		}
	default:
		packRows(panel, src, ld, width, kb, w)
	}
}

// packCols fills a panel whose groups are strided in src: value q of group p is
// src[q·ld + p]. Groups are padded with zeros to w values.
func packCols[T float](panel, src []T, ld, width, kb, w int) {
	for p := range kb {
		d := panel[p*w:][:w]
		for q := range width {
			d[q] = src[q*ld+p]
		}
		clear(d[width:])
	}
}
