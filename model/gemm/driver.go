package gemm

import (
	"runtime"
	"sync"

	"github.com/flextrain/flextrain/internal/half"
)

// float is the element type of a multiply.
type float interface{ ~float32 | ~float64 }

// tileFunc computes one mr×nr tile C = alpha·Ã·B̃ + beta·C from packed panels: a holds k
// groups of mr values (one column of op(A) each), b holds k groups of nr values (one row of
// op(B) each), c is the tile's first element with row stride ldc. When beta is zero C is not
// read. The kernels that pick returns touch only the first rows×cols elements of the tile; the
// others ignore rows and cols and store the whole tile.
type tileFunc[T float] func(k int, a, b, c *T, ldc int, alpha, beta T, rows, cols int)

// kernel is one micro-kernel together with the cache blocking tuned for it.
type kernel[T float] struct {
	name       string                           // names the kernel in tests and benchmarks
	mr, nr     int                              // tile rows and columns
	mc, kc, nc int                              // block sizes of the A panel (rows), the shared dimension and the B panel (columns)
	tile       tileFunc[T]                      // the micro-kernel
	pick       func(rows, cols int) tileFunc[T] // a kernel storing exactly rows×cols; nil if tile stores only whole tiles
	rows       packFunc[T]                      // packs contiguous groups: packRows or a faster equivalent
	cols       packFunc[T]                      // packs strided groups: packCols or a faster equivalent
	pool       sync.Pool                        // *workspace[T]
}

// workspace holds the packed panels of one multiply.
type workspace[T float] struct {
	a, b []T // packed op(A) block (mc×kc) and op(B) block (kc×nc)
	edge []T // mr×nr scratch tile for the ragged border of C
}

// run computes C = alpha·op(A)·op(B) + beta·C with kernel kr; the arguments are checked.
func run[T float](kr *kernel[T], tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	runB(kr, tA, m, n, k, alpha, a, lda, matB[T]{t: tB, b: b, ld: ldb}, beta, c, ldc)
}

// matB is where op(B) comes from: the matrix b, or the 16-bit values h of kind (float32 multiplies only),
// stored with row stride ld, transposed when t. With round (float32 multiplies only) the multiply rounds
// both operands to bfloat16 as it packs them (SgemmBF16): a packed panel is rounded in place, while it is in
// cache, and 16-bit bfloat16 values need none.
type matB[T float] struct {
	t     bool
	b     []T
	h     []uint16
	kind  half.Kind
	ld    int
	round bool
}

// runB is run with op(B) from src; alpha is not zero, k and the sizes are positive.
func runB[T float](kr *kernel[T], tA bool, m, n, k int, alpha T, a []T, lda int, src matB[T], beta T, c []T, ldc int) {
	if w := workers(m*n*k, m, kr.mr); w > 1 {
		runParallel(kr, w, tA, m, n, k, alpha, a, lda, src, beta, c, ldc)
		return
	}
	if w := workers(m*n*k, n, kr.nr); w > 1 { // too few rows to share (a decoding step's one row): columns
		runColumns(kr, w, tA, m, n, k, alpha, a, lda, src, beta, c, ldc)
		return
	}
	runSerial(kr, tA, m, n, k, alpha, a, lda, src, beta, c, ldc)
}

// columns is op(B) from its column c0 on.
func (s matB[T]) columns(c0 int) matB[T] {
	off := c0 // op(B) = B: columns of the stored rows
	if s.t {
		off = c0 * s.ld // op(B) = Bᵀ: rows of the stored matrix
	}
	if s.h != nil {
		s.h = s.h[off:]
	} else {
		s.b = s.b[off:]
	}
	return s
}

// runColumns splits the columns of C into w bands that start on tile boundaries: every element is computed
// by the same tile, in the same order, as by one goroutine, and each band packs only its own part of B.
func runColumns[T float](kr *kernel[T], w int, tA bool, m, n, k int, alpha T, a []T, lda int, src matB[T], beta T, c []T, ldc int) {
	inBands(w, n, kr.nr, func(c0, cols int) {
		runSerial(kr, tA, m, cols, k, alpha, a, lda, src.columns(c0), beta, c[c0:], ldc)
	})
}

// inBands cuts total into w bands of whole tiles and runs part(start, size) on each, the first on the
// calling goroutine, and returns when all are done.
func inBands(w, total, tile int, part func(start, size int)) {
	band := roundUp((total+w-1)/w, tile)
	var wg sync.WaitGroup
	for start := band; start < total; start += band {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part(start, min(band, total-start))
		}()
	}
	part(0, min(band, total))
	wg.Wait()
}

// parallelWork is the least m·n·k worth splitting over goroutines: below, starting them costs more than
// the second core gives back (and the attention's small per-head products already run a sample per core).
const parallelWork = 1 << 22

// workers is how many goroutines share a multiply of work multiply-adds by bands of its size rows (or
// columns) of C: up to GOMAXPROCS, each with at least two tiles of tile rows (or columns).
func workers(work, size, tile int) int {
	if work < parallelWork {
		return 1
	}
	return max(1, min(runtime.GOMAXPROCS(0), size/(2*tile)))
}

// runParallel splits the rows of C into w bands that start on tile boundaries, so that every element is
// computed by the same tile, in the same order, as by one goroutine: the bits do not depend on w.
func runParallel[T float](kr *kernel[T], w int, tA bool, m, n, k int, alpha T, a []T, lda int, src matB[T], beta T, c []T, ldc int) {
	inBands(w, m, kr.mr, func(r0, rows int) {
		ar := a[r0:] // op(A) = Aᵀ: row r0 of op(A) is column r0 of A
		if !tA {
			ar = a[r0*lda:]
		}
		runSerial(kr, tA, rows, n, k, alpha, ar, lda, src, beta, c[r0*ldc:], ldc)
	})
}

// runSerial is run on the calling goroutine.
func runSerial[T float](kr *kernel[T], tA bool, m, n, k int, alpha T, a []T, lda int, src matB[T], beta T, c []T, ldc int) {
	kc := split(k, kr.kc)
	ws := kr.workspace(min(roundUp(m, kr.mr), kr.mc)*kc, kc*min(roundUp(n, kr.nr), kr.nc))
	defer kr.pool.Put(ws)
	for jc := 0; jc < n; jc += kr.nc {
		nb := min(kr.nc, n-jc)
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			packB(ws.b, src, pc, jc, kb, nb, kr.nr, kr.rows, kr.cols)
			if src.round && src.h == nil {
				roundPanel(ws.b[:roundUp(nb, kr.nr)*kb])
			}
			bet := beta
			if pc > 0 {
				bet = 1 // later k blocks add to what the first one stored
			}
			for ic := 0; ic < m; ic += kr.mc {
				mb := min(kr.mc, m-ic)
				packA(ws.a, tA, a, lda, ic, pc, mb, kb, kr.mr, kr.rows, kr.cols)
				if src.round {
					roundPanel(ws.a[:roundUp(mb, kr.mr)*kb])
				}
				kr.block(ws, mb, nb, kb, alpha, bet, c[ic*ldc+jc:], ldc)
			}
		}
	}
}

// roundPanel rounds a packed float32 panel to bfloat16 in place (matB.round).
func roundPanel[T float](p []T) {
	if v, ok := any(p).([]float32); ok {
		half.RoundToBF16(v, v)
	}
}

// block multiplies the packed mb×kb block of op(A) by the packed kb×nb block of op(B) into C.
func (kr *kernel[T]) block(ws *workspace[T], mb, nb, kb int, alpha, beta T, c []T, ldc int) {
	for jr := 0; jr < nb; jr += kr.nr {
		pb := &ws.b[jr*kb]
		for ir := 0; ir < mb; ir += kr.mr {
			pa := &ws.a[ir*kb]
			rows, cols := min(kr.mr, mb-ir), min(kr.nr, nb-jr)
			switch {
			case rows == kr.mr && cols == kr.nr:
				kr.tile(kb, pa, pb, &c[ir*ldc+jr], ldc, alpha, beta, rows, cols)
				continue
			case kr.pick != nil:
				kr.pick(rows, cols)(kb, pa, pb, &c[ir*ldc+jr], ldc, alpha, beta, rows, cols)
				continue
			}
			kr.tile(kb, pa, pb, &ws.edge[0], kr.nr, 1, 0, kr.mr, kr.nr)
			kr.scatter(ws.edge, rows, cols, alpha, beta, c[ir*ldc+jr:], ldc)
		}
	}
}

// scatter stores the rows×cols corner of a full edge tile into C as alpha·tile + beta·C.
func (kr *kernel[T]) scatter(tile []T, rows, cols int, alpha, beta T, c []T, ldc int) {
	for i := range rows {
		src, dst := tile[i*kr.nr:][:cols], c[i*ldc:][:cols]
		if beta == 0 {
			for j, v := range src {
				dst[j] = alpha * v
			}
			continue
		}
		for j, v := range src {
			dst[j] = alpha*v + beta*dst[j]
		}
	}
}

// workspace takes a workspace from the pool with room for na packed A and nb packed B values.
func (kr *kernel[T]) workspace(na, nb int) *workspace[T] {
	ws, _ := kr.pool.Get().(*workspace[T])
	if ws == nil {
		ws = &workspace[T]{edge: make([]T, kr.mr*kr.nr)}
	}
	if cap(ws.a) < na {
		ws.a = make([]T, na)
	}
	if cap(ws.b) < nb {
		ws.b = make([]T, nb)
	}
	ws.a, ws.b = ws.a[:cap(ws.a)], ws.b[:cap(ws.b)]
	return ws
}

// scale sets C = beta·C, writing zeros when beta is zero so that NaNs in C do not survive.
func scale[T float](m, n int, beta T, c []T, ldc int) {
	for i := range m {
		row := c[i*ldc:][:n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// split returns the block size that cuts n into the fewest blocks of at most size,
// with all blocks but the last of equal length.
func split(n, size int) int {
	blocks := (n + size - 1) / size
	return (n + blocks - 1) / blocks
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// The kernels this process can run, fastest first, and the ones Sgemm and Dgemm use.
var (
	sKernels, dKernels = kernels()
	sKernel, dKernel   = sKernels[0], dKernels[0]
)
