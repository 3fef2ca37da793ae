//go:build amd64 && !purego

#include "textflag.h"

// func ropeRowAVX512(y, x, cos, sin *float32, heads, dh int, transpose bool)
//
// RopeRow (rope.go) on every head of one row, 16 lanes at a time; dh is a multiple of 32 and the tables
// are the row's [dh]. Products and sums are separate instructions in the Go code's order (no FMA), so
// every lane rounds as the Go loop does.
TEXT ·ropeRowAVX512(SB), NOSPLIT, $0-49
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ cos+16(FP), R8
	MOVQ sin+24(FP), R9
	MOVQ heads+32(FP), CX
	MOVQ dh+40(FP), DX
	MOVBLZX transpose+48(FP), R10
	MOVQ DX, R11
	SHLQ $1, R11 // the half, in bytes: dh/2 · 4

head:
	TESTQ CX, CX
	JEQ   done
	XORQ  AX, AX // byte offset in the half

chunk:
	CMPQ    AX, R11
	JGE     nexthead
	VMOVUPS (SI)(AX*1), Z0      // x1
	LEAQ    (AX)(R11*1), BX
	VMOVUPS (SI)(BX*1), Z1      // x2
	VMOVUPS (R8)(AX*1), Z2      // c1
	VMOVUPS (R8)(BX*1), Z3      // c2
	VMOVUPS (R9)(AX*1), Z4      // s1
	VMOVUPS (R9)(BX*1), Z5      // s2
	VMULPS  Z2, Z0, Z6          // x1·c1
	VMULPS  Z3, Z1, Z7          // x2·c2
	TESTQ   R10, R10
	JNE     adjoint
	VMULPS  Z4, Z1, Z8          // x2·s1
	VMULPS  Z5, Z0, Z9          // x1·s2
	VSUBPS  Z8, Z6, Z6          // y1 = x1·c1 − x2·s1
	VADDPS  Z9, Z7, Z7          // y2 = x2·c2 + x1·s2
	JMP     store

adjoint:
	VMULPS Z5, Z1, Z8 // x2·s2
	VMULPS Z4, Z0, Z9 // x1·s1
	VADDPS Z8, Z6, Z6 // y1 = x1·c1 + x2·s2
	VSUBPS Z9, Z7, Z7 // y2 = x2·c2 − x1·s1

store:
	VMOVUPS Z6, (DI)(AX*1)
	VMOVUPS Z7, (DI)(BX*1)
	ADDQ    $64, AX
	JMP     chunk

nexthead:
	LEAQ (SI)(R11*2), SI
	LEAQ (DI)(R11*2), DI
	DECQ CX
	JMP  head

done:
	VZEROUPPER
	RET
