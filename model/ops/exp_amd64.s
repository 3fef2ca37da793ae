//go:build amd64 && !purego

#include "textflag.h"

// func expfAVX512(dst, src *float32, n int, c *[12]float32, a, b float32) int
//
// expf(src·a + b) (exp.go) on 16 lanes, operation for operation: multiplies and adds are separate (no
// FMA), so every lane rounds as the Go code does and the results are the same bits.
TEXT ·expfAVX512(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ c+24(FP), DX
	VBROADCASTSS 0(DX), Z16  // log2e
	VBROADCASTSS 4(DX), Z17  // 0.5
	VBROADCASTSS 8(DX), Z18  // ln2hi
	VBROADCASTSS 12(DX), Z19 // ln2lo
	VBROADCASTSS 16(DX), Z20 // 1/720
	VBROADCASTSS 20(DX), Z21 // 1/120
	VBROADCASTSS 24(DX), Z22 // 1/24
	VBROADCASTSS 28(DX), Z23 // 1/6
	VBROADCASTSS 32(DX), Z24 // 1
	VBROADCASTSS 36(DX), Z25 // expLow
	VBROADCASTSS 40(DX), Z26 // expHigh
	VPBROADCASTD 44(DX), Z27 // 127
	VPXORD       Z28, Z28, Z28
	VBROADCASTSS a+32(FP), Z29
	VBROADCASTSS b+36(FP), Z30
	XORQ         AX, AX

loop:
	CMPQ AX, CX
	JGE  done
	VMOVUPS (SI)(AX*4), Z0
	VMULPS  Z29, Z0, Z0
	VADDPS  Z30, Z0, Z0

	// A NaN or a lane above expHigh: stop, the caller runs expf on this block.
	VCMPPS   $0x1E, Z26, Z0, K1 // x > expHigh
	VCMPPS   $0x03, Z0, Z0, K2  // x unordered (NaN)
	KORTESTW K1, K2
	JNE      done
	VCMPPS   $0x1E, Z25, Z0, K3 // x > expLow: the lanes that are not 0

	// ni = int32(t ± 0.5) with t = x·log2e, + when t ≥ 0; n = float32(ni)
	VMULPS     Z16, Z0, Z1
	VADDPS     Z17, Z1, Z2
	VSUBPS     Z17, Z1, Z3
	VCVTTPS2DQ Z2, Z2
	VCVTTPS2DQ Z3, Z3
	VCMPPS     $0x1D, Z28, Z1, K4 // t >= 0
	VMOVDQA32  Z2, K4, Z3
	VCVTDQ2PS  Z3, Z4

	// r = x − n·ln2hi − n·ln2lo
	VMULPS Z18, Z4, Z5
	VSUBPS Z5, Z0, Z5
	VMULPS Z19, Z4, Z6
	VSUBPS Z6, Z5, Z5

	// p = ((((((1/720)·r + 1/120)·r + 1/24)·r + 1/6)·r + 0.5)·r + 1)·r + 1
	VMULPS Z5, Z20, Z6
	VADDPS Z21, Z6, Z6
	VMULPS Z5, Z6, Z6
	VADDPS Z22, Z6, Z6
	VMULPS Z5, Z6, Z6
	VADDPS Z23, Z6, Z6
	VMULPS Z5, Z6, Z6
	VADDPS Z17, Z6, Z6
	VMULPS Z5, Z6, Z6
	VADDPS Z24, Z6, Z6
	VMULPS Z5, Z6, Z6
	VADDPS Z24, Z6, Z6

	// p·2ⁿ, with 2ⁿ built as the bits (ni+127)<<23; 0 where x ≤ expLow
	VPADDD   Z27, Z3, Z3
	VPSLLD   $23, Z3, Z3
	VMULPS.Z Z3, Z6, K3, Z7
	VMOVUPS  Z7, (DI)(AX*4)
	ADDQ     $16, AX
	JMP      loop

done:
	MOVQ AX, ret+40(FP)
	VZEROUPPER
	RET
