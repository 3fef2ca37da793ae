//go:build amd64 && !purego

#include "textflag.h"

// Element-wise float32 kernels, 16 lanes at a time and a masked tail. Each lane does the Go loop's one
// operation (or two, in its order), so the bits are the same.

// TAILMASK sets K1 to the low CX bits (0 < CX < 16).
#define TAILMASK \
	MOVL  $1, AX  \
	SHLL  CX, AX  \
	DECL  AX      \
	KMOVW AX, K1

// BINARY is the body of a kernel dst[i] = dst[i] OP src[i] with the Go signature (dst, src *float32, n int).
#define BINARY(OP) \
	MOVQ dst+0(FP), DI \
	MOVQ src+8(FP), SI \
	MOVQ n+16(FP), CX \
loop: \
	CMPQ    CX, $16 \
	JLT     tail \
	VMOVUPS (DI), Z0 \
	OP      (SI), Z0, Z0 \
	VMOVUPS Z0, (DI) \
	ADDQ    $64, DI \
	ADDQ    $64, SI \
	SUBQ    $16, CX \
	JMP     loop \
tail: \
	TESTQ CX, CX \
	JEQ   done \
	TAILMASK \
	VMOVUPS (DI), K1, Z0 \
	VMOVUPS (SI), K1, Z1 \
	OP      Z1, Z0, Z0 \
	VMOVUPS Z0, K1, (DI) \
done: \
	VZEROUPPER \
	RET

// func addAVX512(dst, src *float32, n int)
//
// dst[i] += src[i].
TEXT ·addAVX512(SB), NOSPLIT, $0-24
	BINARY(VADDPS)

// func mulAVX512(dst, src *float32, n int)
//
// dst[i] *= src[i].
TEXT ·mulAVX512(SB), NOSPLIT, $0-24
	BINARY(VMULPS)

// func recipOnePlusAVX512(s *float32, n int)
//
// s[i] = 1 / (1 + s[i]).
TEXT ·recipOnePlusAVX512(SB), NOSPLIT, $0-16
	MOVQ         s+0(FP), DI
	MOVQ         n+8(FP), CX
	MOVL         $0x3f800000, AX
	VPBROADCASTD AX, Z2          // 1

recloop:
	CMPQ    CX, $16
	JLT     rectail
	VADDPS  (DI), Z2, Z0
	VDIVPS  Z0, Z2, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     recloop

rectail:
	TESTQ CX, CX
	JEQ   recdone
	TAILMASK
	VMOVUPS (DI), K1, Z0
	VADDPS  Z0, Z2, Z0
	VDIVPS  Z0, Z2, Z0
	VMOVUPS Z0, K1, (DI)

recdone:
	VZEROUPPER
	RET
