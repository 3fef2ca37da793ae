//go:build amd64 && !purego

package ops

import "unsafe"

// meansAVX512 and dotsAVX512 are the per-row products of selected_amd64.s, 8 heads at a time.
//
//go:noescape
func meansAVX512(z, pt, x *float32, toks *int, k, width int)

//go:noescape
func dotsAVX512(dpt, dz, x *float32, toks *int, k, width int)

// selectedKernels turns the vector kernels on (tests turn them off to compare with the GEMM path).
var selectedKernels = hasAVX512

// selectedVector reports whether the vector kernels take rows of width values of T with 8 heads.
func selectedVector[T Float](heads, width int) bool {
	var z T
	return selectedKernels && unsafe.Sizeof(z) == 4 && heads == 8 && width%32 == 0 && width > 0
}

// meansVector sets z [8, width] to Σ_j pt[j]·x[toks[j]] with pt [k, 8] token-major (selectedVector must hold).
func meansVector[T Float](z, pt, x []T, toks []int, width int) {
	checkSelected(x, toks, width, len(pt) >= 8*len(toks) && len(z) >= 8*width)
	meansAVX512(f32(z), f32(pt), f32(x), &toks[0], len(toks), width)
}

// dotsVector sets dpt [k, 8] (token-major) to the dots of dz's 8 rows [8, width] with the rows x[toks[j]].
func dotsVector[T Float](dpt, dz, x []T, toks []int, width int) {
	checkSelected(x, toks, width, len(dpt) >= 8*len(toks) && len(dz) >= 8*width)
	dotsAVX512(f32(dpt), f32(dz), f32(x), &toks[0], len(toks), width)
}

// checkSelected panics unless the kernels stay inside their slices: every picked row in x, the others as ok says.
func checkSelected[T Float](x []T, toks []int, width int, ok bool) {
	if len(toks) == 0 || !ok {
		panic("ops: selected-token kernel: buffers too short")
	}
	for _, t := range toks {
		if t < 0 || (t+1)*width > len(x) {
			panic("ops: selected-token kernel: a token row outside the features")
		}
	}
}

// f32 is the first element of a float32 slice held as []T, for the assembly kernels (callers check T).
func f32[T Float](x []T) *float32 { return (*float32)(unsafe.Pointer(unsafe.SliceData(x))) }
