//go:build amd64 && !purego

#include "textflag.h"

// func roundBF16x8(dst, src *float32, n int)
//
// dst[i] = bits(src[i]) + 0x7fff + ((bits(src[i]) >> 16) & 1), its low half cleared.
TEXT ·roundBF16x8(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	SHRQ         $3, CX
	JZ           done
	MOVQ         $1, AX
	MOVQ         AX, X3
	VPBROADCASTD X3, Y3          // 1
	MOVQ         $0x7fff, AX
	MOVQ         AX, X4
	VPBROADCASTD X4, Y4          // 0x7fff
	MOVQ         $0xffff0000, AX
	MOVQ         AX, X5
	VPBROADCASTD X5, Y5          // the upper half

loop:
	VMOVDQU (SI), Y0
	VPSRLD  $16, Y0, Y1
	VPAND   Y3, Y1, Y1
	VPADDD  Y4, Y1, Y1
	VPADDD  Y1, Y0, Y0
	VPAND   Y5, Y0, Y0
	VMOVDQU Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     loop

done:
	VZEROUPPER
	RET
