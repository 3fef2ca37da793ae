//go:build amd64 && !purego

#include "textflag.h"

// func adamwAVX512(w, grad, m, v *float32, n int, k *adamwConsts[float32])
//
// The AdamW element loop (adamwConsts.update) on 16 lanes, operation for operation: multiplies and adds are
// separate (no FMA) and VDIVPS and VSQRTPS round correctly, as the Go code does, so the bits are the same.
TEXT ·adamwAVX512(SB), NOSPLIT, $0-48
	MOVQ w+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), DX
	VBROADCASTSS 0(DX), Z16  // β1
	VBROADCASTSS 4(DX), Z17  // 1−β1
	VBROADCASTSS 8(DX), Z18  // β2
	VBROADCASTSS 12(DX), Z19 // 1−β2
	VBROADCASTSS 16(DX), Z20 // 1−β1^t
	VBROADCASTSS 20(DX), Z21 // 1−β2^t
	VBROADCASTSS 24(DX), Z22 // ε
	VBROADCASTSS 28(DX), Z23 // learning rate
	VBROADCASTSS 32(DX), Z24 // weight decay
	XORQ         AX, AX

loop:
	CMPQ    AX, CX
	JGE     done
	VMOVUPS (SI)(AX*4), Z0 // g
	VMOVUPS (R8)(AX*4), Z1 // m
	VMOVUPS (R9)(AX*4), Z2 // v
	VMOVUPS (DI)(AX*4), Z3 // w

	// m = β1·m + (1−β1)·g
	VMULPS Z16, Z1, Z1
	VMULPS Z17, Z0, Z4
	VADDPS Z4, Z1, Z1

	// v = β2·v + (1−β2)·g²
	VMULPS Z0, Z0, Z5
	VMULPS Z19, Z5, Z5
	VMULPS Z18, Z2, Z2
	VADDPS Z5, Z2, Z2

	// √v̂ + ε with v̂ = v/(1−β2^t)
	VDIVPS  Z21, Z2, Z6
	VSQRTPS Z6, Z6
	VADDPS  Z22, Z6, Z6

	// w −= lr·(m̂/(√v̂+ε) + λ·w) with m̂ = m/(1−β1^t)
	VDIVPS Z20, Z1, Z7
	VDIVPS Z6, Z7, Z7
	VMULPS Z24, Z3, Z8
	VADDPS Z8, Z7, Z7
	VMULPS Z23, Z7, Z7
	VSUBPS Z7, Z3, Z3

	VMOVUPS Z1, (R8)(AX*4)
	VMOVUPS Z2, (R9)(AX*4)
	VMOVUPS Z3, (DI)(AX*4)
	ADDQ    $16, AX
	JMP     loop

done:
	VZEROUPPER
	RET
