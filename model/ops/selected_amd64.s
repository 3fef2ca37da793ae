//go:build amd64 && !purego

#include "textflag.h"

// Per-row products of the union form over a row's selected HR tokens, 8 heads at a time, reading the
// tokens' feature rows in place (no gather, no packing). x is the sample's HR features with rows of
// width float32 values; toks lists the k selected rows; width is a multiple of 32.

// func meansAVX512(z, pt, x *float32, toks *int, k, width int)
//
// z[h][c] = Σ_j pt[j][h]·x[toks[j]][c] for h < 8, c < width: pt is [k][8] (token-major), z is [8][width].
// Each output sums over j in order, one FMA per term.
TEXT ·meansAVX512(SB), NOSPLIT, $0-48
	MOVQ z+0(FP), DI
	MOVQ pt+8(FP), SI
	MOVQ x+16(FP), R9
	MOVQ toks+24(FP), R10
	MOVQ k+32(FP), R11
	MOVQ width+40(FP), R13
	SHLQ $2, R13            // row bytes of x and z
	LEAQ (R13)(R13*2), R12  // 3 rows
	XORQ BX, BX             // column byte offset

means_chunk:
	CMPQ   BX, R13
	JGE    means_done
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	VXORPS Z8, Z8, Z8
	VXORPS Z9, Z9, Z9
	VXORPS Z10, Z10, Z10
	VXORPS Z11, Z11, Z11
	VXORPS Z12, Z12, Z12
	VXORPS Z13, Z13, Z13
	VXORPS Z14, Z14, Z14
	VXORPS Z15, Z15, Z15
	XORQ   CX, CX
	MOVQ   SI, AX           // pt row j

means_token:
	CMPQ         CX, R11
	JGE          means_store
	MOVQ         (R10)(CX*8), DX
	IMULQ        R13, DX
	ADDQ         R9, DX
	VMOVUPS      (DX)(BX*1), Z16
	VMOVUPS      64(DX)(BX*1), Z17
	VBROADCASTSS 0(AX), Z18
	VFMADD231PS  Z18, Z16, Z0
	VFMADD231PS  Z18, Z17, Z1
	VBROADCASTSS 4(AX), Z19
	VFMADD231PS  Z19, Z16, Z2
	VFMADD231PS  Z19, Z17, Z3
	VBROADCASTSS 8(AX), Z20
	VFMADD231PS  Z20, Z16, Z4
	VFMADD231PS  Z20, Z17, Z5
	VBROADCASTSS 12(AX), Z21
	VFMADD231PS  Z21, Z16, Z6
	VFMADD231PS  Z21, Z17, Z7
	VBROADCASTSS 16(AX), Z22
	VFMADD231PS  Z22, Z16, Z8
	VFMADD231PS  Z22, Z17, Z9
	VBROADCASTSS 20(AX), Z23
	VFMADD231PS  Z23, Z16, Z10
	VFMADD231PS  Z23, Z17, Z11
	VBROADCASTSS 24(AX), Z24
	VFMADD231PS  Z24, Z16, Z12
	VFMADD231PS  Z24, Z17, Z13
	VBROADCASTSS 28(AX), Z25
	VFMADD231PS  Z25, Z16, Z14
	VFMADD231PS  Z25, Z17, Z15
	ADDQ         $32, AX
	INCQ         CX
	JMP          means_token

means_store:
	LEAQ    (DI)(BX*1), R14 // row 0 at this chunk
	LEAQ    (R14)(R13*4), R15 // row 4
	VMOVUPS Z0, (R14)
	VMOVUPS Z1, 64(R14)
	VMOVUPS Z2, (R14)(R13*1)
	VMOVUPS Z3, 64(R14)(R13*1)
	VMOVUPS Z4, (R14)(R13*2)
	VMOVUPS Z5, 64(R14)(R13*2)
	VMOVUPS Z6, (R14)(R12*1)
	VMOVUPS Z7, 64(R14)(R12*1)
	VMOVUPS Z8, (R15)
	VMOVUPS Z9, 64(R15)
	VMOVUPS Z10, (R15)(R13*1)
	VMOVUPS Z11, 64(R15)(R13*1)
	VMOVUPS Z12, (R15)(R13*2)
	VMOVUPS Z13, 64(R15)(R13*2)
	VMOVUPS Z14, (R15)(R12*1)
	VMOVUPS Z15, 64(R15)(R12*1)
	ADDQ    $128, BX
	JMP     means_chunk

means_done:
	VZEROUPPER
	RET

// func dotsAVX512(dpt, dz, x *float32, toks *int, k, width int)
//
// dpt[j][h] = Σ_c dz[h][c]·x[toks[j]][c] for h < 8, j < k: dz is [8][width], dpt is [k][8] (token-major).
// Each dot keeps 16 lanes of partial sums over the columns, then adds them in a fixed tree.
TEXT ·dotsAVX512(SB), NOSPLIT, $0-48
	MOVQ dpt+0(FP), DI
	MOVQ dz+8(FP), SI
	MOVQ x+16(FP), R9
	MOVQ toks+24(FP), R10
	MOVQ k+32(FP), R11
	MOVQ width+40(FP), R13
	SHLQ $2, R13            // row bytes
	LEAQ (R13)(R13*2), R12  // 3 rows
	XORQ CX, CX

dots_token:
	CMPQ   CX, R11
	JGE    dots_done
	MOVQ   (R10)(CX*8), DX
	IMULQ  R13, DX
	ADDQ   R9, DX           // the token's row
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3
	VXORPS Z4, Z4, Z4
	VXORPS Z5, Z5, Z5
	VXORPS Z6, Z6, Z6
	VXORPS Z7, Z7, Z7
	XORQ   BX, BX

dots_chunk:
	CMPQ        BX, R13
	JGE         dots_sum
	VMOVUPS     (DX)(BX*1), Z16
	LEAQ        (SI)(BX*1), R14
	LEAQ        (R14)(R13*4), R15
	VFMADD231PS (R14), Z16, Z0
	VFMADD231PS (R14)(R13*1), Z16, Z1
	VFMADD231PS (R14)(R13*2), Z16, Z2
	VFMADD231PS (R14)(R12*1), Z16, Z3
	VFMADD231PS (R15), Z16, Z4
	VFMADD231PS (R15)(R13*1), Z16, Z5
	VFMADD231PS (R15)(R13*2), Z16, Z6
	VFMADD231PS (R15)(R12*1), Z16, Z7
	ADDQ        $64, BX
	JMP         dots_chunk

dots_sum:
	// Each Zh: 16 lanes → 8 → 4 → 1, then stored at dpt[j][h].
	VEXTRACTF32X8 $1, Z0, Y16
	VADDPS        Y16, Y0, Y0
	VEXTRACTF32X8 $1, Z1, Y17
	VADDPS        Y17, Y1, Y1
	VEXTRACTF32X8 $1, Z2, Y18
	VADDPS        Y18, Y2, Y2
	VEXTRACTF32X8 $1, Z3, Y19
	VADDPS        Y19, Y3, Y3
	VEXTRACTF32X8 $1, Z4, Y20
	VADDPS        Y20, Y4, Y4
	VEXTRACTF32X8 $1, Z5, Y21
	VADDPS        Y21, Y5, Y5
	VEXTRACTF32X8 $1, Z6, Y22
	VADDPS        Y22, Y6, Y6
	VEXTRACTF32X8 $1, Z7, Y23
	VADDPS        Y23, Y7, Y7
	// (h0, h1) → one vector of 8 pairs of 4-lane halves, and so on: hadd pairs the heads' lanes.
	VHADDPS Y1, Y0, Y0       // lanes: h0 pairs, h1 pairs (per 128-bit half)
	VHADDPS Y3, Y2, Y2
	VHADDPS Y5, Y4, Y4
	VHADDPS Y7, Y6, Y6
	VHADDPS Y2, Y0, Y0       // per half: h0, h1, h2, h3 partial sums
	VHADDPS Y6, Y4, Y4       // per half: h4, h5, h6, h7
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0  // h0..h3
	VEXTRACTF128 $1, Y4, X5
	VADDPS       X5, X4, X4  // h4..h7
	MOVQ         CX, AX
	SHLQ         $5, AX      // 8 floats per token
	VMOVUPS      X0, (DI)(AX*1)
	VMOVUPS      X4, 16(DI)(AX*1)
	INCQ         CX
	JMP          dots_token

dots_done:
	VZEROUPPER
	RET
