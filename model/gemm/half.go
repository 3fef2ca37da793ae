package gemm

import (
	"sync"

	"github.com/flextrain/flextrain/internal/half"
)

// SgemmHalf is Sgemm with B held as 16-bit values of kind (float16 or bfloat16): C = alpha·op(A)·op(B) +
// beta·C, each value of B widened to float32 (exactly) as its panel is packed. The result is bitwise
// Sgemm's on the widened B, and B takes half the memory of float32 and is never widened whole. This is how
// frozen weights published in 16 bits are multiplied: y = x·Wᵀ is SgemmHalf(false, true, …).
func SgemmHalf(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []uint16, kind half.Kind, ldb int, beta float32, c []float32, ldc int) {
	sgemmHalf(tA, tB, m, n, k, alpha, a, lda, matB[float32]{t: tB, h: b, kind: kind, ld: ldb}, beta, c, ldc)
}

// SgemmHalfBF16 is SgemmHalf for B in bfloat16 with A rounded to bfloat16 as its panels are packed (mixed
// precision's products, ops.BF16): bitwise SgemmHalf over a rounded copy of A, without the copy.
func SgemmHalfBF16(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []uint16, ldb int, beta float32, c []float32, ldc int) {
	sgemmHalf(tA, tB, m, n, k, alpha, a, lda, matB[float32]{t: tB, h: b, kind: half.BFloat16, ld: ldb, round: true}, beta, c, ldc)
}

// sgemmHalf is SgemmHalf and SgemmHalfBF16 over op(B) from src.
func sgemmHalf(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, src matB[float32], beta float32, c []float32, ldc int) {
	b, kind, ldb := src.h, src.kind, src.ld
	mustCheck(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if kind != half.Float16 && kind != half.BFloat16 {
		panic("gemm: SgemmHalf: " + kind.String() + " is not a 16-bit format")
	}
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	if src.h == nil {
		src.h = []uint16{} // an empty B (n or k zero) was handled above; nil marks a float B in matB
	}
	runB(sKernel, tA, m, n, k, alpha, a, lda, src, beta, c, ldc)
}

// packHalf is packB for 16-bit values: rows pc… (kb) and columns jc… (nb) of op(B) widened into panels of
// nr columns, zero past nb.
func packHalf(dst []float32, b []uint16, kind half.Kind, t bool, ld, pc, jc, kb, nb, nr int, strided packFunc[float32]) {
	for jr := 0; jr < nb; jr += nr {
		panel, width := dst[jr*kb:][:nr*kb], min(nr, nb-jr)
		if t { // op(B) = Bᵀ: column q of the panel is row jc+jr+q of B, contiguous; the packer pads
			packHalfT(panel, b[(jc+jr)*ld+pc:], kind, ld, width, kb, nr, strided)
			continue
		}
		for p := range kb { // row p of the panel is row pc+p of B, contiguous
			kind.Widen(panel[p*nr:], b[(pc+p)*ld+jc+jr:][:width])
			clear(panel[p*nr+width : (p+1)*nr])
		}
	}
}

// packHalfT fills a panel of kb rows of nr values whose column q (q < width) is row q of b (stride ld). It
// works in chunks of each row: widened along the row into a float32 tile (sequential reads), then packed
// from the tile by the kernel's own strided packer, as a float32 B would be.
func packHalfT(panel []float32, b []uint16, kind half.Kind, ld, width, kb, nr int, strided packFunc[float32]) {
	tile := tiles.Get().(*[64 * tileChunk]float32) // nr ≤ 64 for every kernel (TestKernelsFitHalfTile)
	defer tiles.Put(tile)
	const chunk = tileChunk
	for p0 := 0; p0 < kb; p0 += chunk {
		np := min(chunk, kb-p0)
		for q := range width {
			kind.Widen(tile[q*chunk:], b[q*ld+p0:][:np])
		}
		strided(panel[p0*nr:], tile[:], chunk, width, np, nr)
	}
}

// tileChunk is how many values of each row packHalfT widens at a time: a whole k block (kc = 256) of the
// kernels, so that each row of B is read in one run.
const tileChunk = 256

// tiles recycles packHalfT's tiles (64 KiB: too large for the stack, and a tile handed to the packer
// function would escape there anyway).
var tiles = sync.Pool{New: func() any { return new([64 * tileChunk]float32) }}
