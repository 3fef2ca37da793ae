//go:build amd64 && !purego

#include "textflag.h"

// Transposing packers for AVX-512 (see gatherArgs in pack_amd64.go). For p in [0, kb):
// two masked gathers read the values src[idx[q] + p] of one group (q < 32 float32 or
// q < 16 float64), lanes outside the gather masks read as zero, and two masked stores
// write the group's w values to dst[p·w:].

// func gatherS(dst, src *float32, idx *[32]int32, kb, step, g1, g2, s1, s2 int)
TEXT ·gatherS(SB), NOSPLIT, $0-72
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ idx+16(FP), AX
	VMOVDQU32 (AX), Z30
	VMOVDQU32 64(AX), Z31
	MOVQ kb+24(FP), CX
	MOVQ step+32(FP), R8
	MOVQ g1+40(FP), R9
	MOVQ g2+48(FP), R10
	MOVQ s1+56(FP), AX
	KMOVW AX, K4
	MOVQ s2+64(FP), AX
	KMOVW AX, K5
	TESTQ CX, CX
	JZ gatherS_done
gatherS_loop:
	KMOVW R9, K1
	VPXORD Z0, Z0, Z0
	VGATHERDPS (SI)(Z30*4), K1, Z0
	KMOVW R10, K2
	VPXORD Z1, Z1, Z1
	VGATHERDPS (SI)(Z31*4), K2, Z1
	VMOVUPS Z0, K4, (DI)
	VMOVUPS Z1, K5, 64(DI)
	ADDQ $4, SI
	ADDQ R8, DI
	DECQ CX
	JNZ gatherS_loop
gatherS_done:
	VZEROUPPER
	RET

// func gatherD(dst, src *float64, idx *[32]int32, kb, step, g1, g2, s1, s2 int)
TEXT ·gatherD(SB), NOSPLIT, $0-72
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ idx+16(FP), AX
	VMOVDQU32 (AX), Y30
	VMOVDQU32 32(AX), Y31
	MOVQ kb+24(FP), CX
	MOVQ step+32(FP), R8
	MOVQ g1+40(FP), R9
	MOVQ g2+48(FP), R10
	MOVQ s1+56(FP), AX
	KMOVW AX, K4
	MOVQ s2+64(FP), AX
	KMOVW AX, K5
	TESTQ CX, CX
	JZ gatherD_done
gatherD_loop:
	KMOVW R9, K1
	VPXORD Z0, Z0, Z0
	VGATHERDPD (SI)(Y30*8), K1, Z0
	KMOVW R10, K2
	VPXORD Z1, Z1, Z1
	VGATHERDPD (SI)(Y31*8), K2, Z1
	VMOVUPD Z0, K4, (DI)
	VMOVUPD Z1, K5, 64(DI)
	ADDQ $8, SI
	ADDQ R8, DI
	DECQ CX
	JNZ gatherD_loop
gatherD_done:
	VZEROUPPER
	RET

// Contiguous packers for AVX-512 (see copyRowsS in pack_amd64.go). For p in [0, kb): two
// zero-masking loads read the width values at src + p·ld (lanes past width read as zero and
// never fault) and two masked stores write the group's w values to dst + p·step.

// func copyS(dst, src *float32, ld, kb, step, g1, g2, s1, s2 int)
TEXT ·copyS(SB), NOSPLIT, $0-72
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), DX
	MOVQ kb+24(FP), CX
	MOVQ step+32(FP), R8
	MOVQ g1+40(FP), AX
	KMOVW AX, K1
	MOVQ g2+48(FP), AX
	KMOVW AX, K2
	MOVQ s1+56(FP), AX
	KMOVW AX, K3
	MOVQ s2+64(FP), AX
	KMOVW AX, K4
	TESTQ CX, CX
	JZ copyS_done
copyS_loop:
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z 64(SI), K2, Z1
	VMOVUPS Z0, K3, (DI)
	VMOVUPS Z1, K4, 64(DI)
	ADDQ DX, SI
	ADDQ R8, DI
	DECQ CX
	JNZ copyS_loop
copyS_done:
	VZEROUPPER
	RET

// func copyD(dst, src *float64, ld, kb, step, g1, g2, s1, s2 int)
TEXT ·copyD(SB), NOSPLIT, $0-72
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), DX
	MOVQ kb+24(FP), CX
	MOVQ step+32(FP), R8
	MOVQ g1+40(FP), AX
	KMOVW AX, K1
	MOVQ g2+48(FP), AX
	KMOVW AX, K2
	MOVQ s1+56(FP), AX
	KMOVW AX, K3
	MOVQ s2+64(FP), AX
	KMOVW AX, K4
	TESTQ CX, CX
	JZ copyD_done
copyD_loop:
	VMOVUPD.Z (SI), K1, Z0
	VMOVUPD.Z 64(SI), K2, Z1
	VMOVUPD Z0, K3, (DI)
	VMOVUPD Z1, K4, 64(DI)
	ADDQ DX, SI
	ADDQ R8, DI
	DECQ CX
	JNZ copyD_loop
copyD_done:
	VZEROUPPER
	RET
