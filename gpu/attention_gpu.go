//go:build gpu

package gpu

import (
	"fmt"
	"math"

	"github.com/flextrain/flextrain/model/ops"
)

// Attention is ops.Attention's forward pass on the device: for each sample b and head h of q, k, v
// [B·N, H·dh] (q and k rotated), P = softmax(q·kᵀ/√dh) over the keys each row sees (lay: causal, or Full)
// and o = P·v. It returns P [B, H, N, N] (zeros past each row's keys), which AttentionGrad reads; the caller
// frees it. The products are cuBLAS's, batched over the heads (a head is a column block of the rows), in
// TF32 under BF16 products (gemmIn).
func (d *Device) Attention(o, q, k, v Buffer, lay ops.Layout) (Buffer, error) {
	if err := checkAttention(lay, o, q, k, v); err != nil {
		return Buffer{}, err
	}
	N, H, dh, W := lay.N, lay.Heads, lay.HeadDim, lay.Heads*lay.HeadDim
	p, err := d.Alloc(lay.B * H * N * N)
	if err != nil {
		return Buffer{}, err
	}
	if err = d.Zero(o); err == nil {
		err = d.Zero(p)
	}
	scale := float32(1 / math.Sqrt(float64(dh)))
	for b := 0; b < lay.B && err == nil; b++ {
		L, row, ph := lay.Lens[b], b*N*W, b*H*N*N
		if L == 0 {
			continue // its rows see no key: P and o stay zero
		}
		head := func(x Buffer, t bool) mat { return mat{b: x, off: row, ld: W, t: t, batchShift: dh} }
		pm := mat{b: p, off: ph, ld: N, batchShift: N * N}
		if err = d.gemmIn(lay.Products, head(q, false), head(k, true), pm, N, L, dh, scale, 0, H); err != nil {
			break
		}
		if err = d.launch("attn_softmax", Rows(H*N), p.at(ph), int64(N), int64(L), boolArg(lay.Full)); err != nil {
			break
		}
		err = d.gemmIn(lay.Products, pm, head(v, false), head(o, false), N, dh, L, 1, 0, H)
	}
	if err != nil {
		d.Free(p)
		return Buffer{}, err
	}
	return p, nil
}

// AttentionGrad is ops.Attention's backward pass: from the upstream gradient g [B·N, H·dh] and the forward
// pass's P, it sets dq, dk and dv (dS = P ⊙ (g·vᵀ − rowsum), dq = dS·k/√dh, dk = dSᵀ·q/√dh, dv = Pᵀ·g).
func (d *Device) AttentionGrad(dq, dk, dv, q, k, v, g, p Buffer, lay ops.Layout) error {
	if err := checkAttention(lay, dq, dk, dv, q, k, v, g); err != nil {
		return err
	}
	N, H, dh, W := lay.N, lay.Heads, lay.HeadDim, lay.Heads*lay.HeadDim
	if p.n != lay.B*H*N*N {
		return fmt.Errorf("gpu: AttentionGrad: P holds %d values, the layout %d", p.n, lay.B*H*N*N)
	}
	ds, err := d.Alloc(H * N * N)
	if err != nil {
		return err
	}
	defer d.Free(ds)
	for _, x := range []Buffer{dq, dk, dv} {
		if err := d.Zero(x); err != nil {
			return err
		}
	}
	scale := float32(1 / math.Sqrt(float64(dh)))
	for b := 0; b < lay.B; b++ {
		L, row := lay.Lens[b], b*N*W
		if L == 0 {
			continue
		}
		head := func(x Buffer, t bool) mat { return mat{b: x, off: row, ld: W, t: t, batchShift: dh} }
		pm := mat{b: p, off: b * H * N * N, ld: N, batchShift: N * N}
		dsm := mat{b: ds, ld: N, batchShift: N * N}
		steps := []func() error{
			func() error { return d.gemmIn(lay.Products, head(g, false), head(v, true), dsm, N, L, dh, 1, 0, H) }, // dP = g·vᵀ
			func() error {
				return d.gemmIn(lay.Products, tr(pm), head(g, false), head(dv, false), L, dh, N, 1, 1, H)
			}, // dv = Pᵀ·g
			func() error {
				return d.launch("attn_softmax_back", Rows(H*N), ds.ptr, p.at(b*H*N*N), int64(N), int64(L))
			},
			func() error {
				return d.gemmIn(lay.Products, dsm, head(k, false), head(dq, false), N, dh, L, scale, 1, H)
			}, // dq = dS·k/√dh
			func() error {
				return d.gemmIn(lay.Products, tr(dsm), head(q, false), head(dk, false), L, dh, N, scale, 1, H)
			}, // dk = dSᵀ·q/√dh
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	return nil
}

// tr is m read transposed.
func tr(m mat) mat {
	m.t = !m.t
	return m
}

// checkAttention refuses buffers that do not hold the layout's B·N rows of H·dh values.
func checkAttention(lay ops.Layout, bufs ...Buffer) error {
	n := lay.B * lay.N * lay.Heads * lay.HeadDim
	if len(lay.Lens) != lay.B {
		return fmt.Errorf("gpu: attention: %d lengths for %d samples", len(lay.Lens), lay.B)
	}
	for _, b := range bufs {
		if b.n != n {
			return fmt.Errorf("gpu: attention: a buffer of %d values, the layout holds %d", b.n, n)
		}
	}
	return nil
}

// boolArg is a flag as a kernel's 8-byte argument.
func boolArg(v bool) int64 {
	if v {
		return 1
	}
	return 0
}
