package gpu

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/ops"
)

// flexCase is a small FlexAttention problem: two image samples (one padded) and a text-only one, HR rows
// with and without a selection, and the CPU's dense form as the plan.
func flexCase(rng *rand.Rand) (*ops.FlexPlan, [][]float32, [][]int) {
	const B, N, H, dh, g, zg = 3, 9, 2, 4, 3, 6
	W, M := H*dh, zg*zg
	plan := &ops.FlexPlan{Layout: ops.Layout{B: B, N: N, Lens: []int{9, 6, 5}, Heads: H, HeadDim: dh}, Alpha: 0.7,
		Rows: [][]int{{5, 7, 8}, {3, 4, 5}, nil}, M: M, Cells: ops.CellGrid{G: g, Zg: zg}, Dense: true,
		RopeCos: make([][]float64, B), RopeSin: make([][]float64, B)}
	for b := range 2 {
		cos, sin := ops.RopeTables(M+b, dh, 10000)
		plan.RopeCos[b], plan.RopeSin[b] = cos[b*dh:], sin[b*dh:] // each sample's own positions
	}
	cells := make([]float32, B*N*g*g)
	for b, rows := range plan.Rows {
		for _, r := range rows {
			if r == 7 {
				continue // an HR row without a selection: plain
			}
			for c := range g * g {
				if rng.IntN(3) == 0 {
					cells[(b*N+r)*g*g+c] = 1
				}
			}
		}
	}
	n := B * N * W
	vals := [][]float32{randoms(rng, n), randoms(rng, n), randoms(rng, n), scaled(randoms(rng, W*W), 0.3),
		scaled(randoms(rng, W*W), 0.3), randoms(rng, B*M*W), cells}
	shapes := [][]int{{B * N, W}, {B * N, W}, {B * N, W}, {W, W}, {W, W}, {B * M, W}, {B * N, g * g}}
	return plan, vals, shapes
}

// TestFlexAttentionTwin: the device's FlexAttention, walked in Go as its kernels and products do (flexTwin),
// matches ops.FlexAttention forward and backward (q, k, v and both HR projections), in the dense form (all
// M HR tokens) and in the union form (the union of the tokens some row selected), with float32 and with
// bfloat16 HR projections (the operands rounded where the CPU rounds them; the weight gradients' upstream
// values are rounded after sums in another order, so a value near a rounding boundary may land one bfloat16
// step away: a looser bound for those two).
func TestFlexAttentionTwin(t *testing.T) {
	for _, tc := range []struct {
		dense    bool
		products ops.Precision
		wTol     float64
	}{{true, ops.Native, 1e-5}, {false, ops.Native, 1e-5}, {true, ops.BF16, 1e-4}, {false, ops.BF16, 1e-4}} {
		rng := rand.New(rand.NewPCG(25, 26))
		plan, vals, shapes := flexCase(rng)
		plan.Dense, plan.Products = tc.dense, tc.products
		up := randoms(rng, len(vals[0]))
		want, wantG := cpuOpN(t, 5, func(in []*G.Node) (*G.Node, error) {
			return ops.FlexAttention(in[0], in[1], in[2], in[3], in[4], in[5], in[6], plan, true)
		}, vals, shapes, up)
		o, grads := flexTwin(plan, vals, up)
		form := map[bool]string{true: "dense", false: "union"}[tc.dense] + " " + tc.products.String()
		closeTo(t, form+" o", len(o), o, want, 1e-5)
		for i, name := range []string{"dq", "dk", "dv", "dwk", "dwv"} {
			tol := 1e-5
			if i >= 3 {
				tol = tc.wTol
			}
			closeTo(t, form+" "+name, len(grads[i]), grads[i], wantG[i], tol)
		}
		if set := hrSetOf(plan, 0, vals[6]); tc.dense != (len(set.tokens) == plan.M) {
			t.Errorf("%s form: sample 0 computes with %d of %d HR tokens", form, len(set.tokens), plan.M)
		}
	}
}

// flexTwin is Device.FlexAttention and FlexAttentionGrad in Go: plain attention (attnTwin), then per
// sample the HR keys and values of its hrSet's U tokens (gathered from hd), flex_softmax's masked rows for
// the rows flexRows computes (every real row dense, the HR rows with a selection in the union form), the
// blend, and the backward pass in the order of flexBackward.
func flexTwin(plan *ops.FlexPlan, vals [][]float32, up []float32) ([]float32, [5][]float32) {
	q, k, v, wk, wv, hd, cells := vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6]
	bf16 := plan.Products == ops.BF16
	if bf16 { // the HR projections' weights for the tensor cores (FlexAttention's narrow)
		wk, wv = roundedTwin(wk), roundedTwin(wv)
	}
	lay, H, dh, N := plan.Layout, plan.Heads, plan.HeadDim, plan.N
	W, G2, alpha := H*dh, plan.Cells.G*plan.Cells.G, float32(plan.Alpha)
	scale := float32(1 / math.Sqrt(float64(dh)))
	weights := make([]float32, lay.B*N)
	sel := make([][]float32, lay.B)
	for b := range lay.B {
		sel[b] = hrSetOf(plan, b, cells).rowsel
		for i := range weights[b*N : (b+1)*N] {
			weights[b*N+i] = 1
			if i < len(sel[b]) && sel[b][i] != 0 {
				weights[b*N+i] = 1 - alpha
			}
		}
	}
	gw := make([]float32, len(up))
	for i := range gw {
		gw[i] = weights[i/W] * up[i]
	}
	o, _, _, _ := attnTwin(lay, q, k, v, up)
	_, dq, dk, dv := attnTwin(lay, q, k, v, gw)
	dwk, dwv := make([]float32, W*W), make([]float32, W*W)
	for b := range lay.B {
		if sel[b] == nil {
			continue
		}
		set := hrSetOf(plan, b, cells)
		L, M, cellOf, cos, sin := plan.Lens[b], len(set.tokens), set.cellOf, set.cos, set.sin
		hdb := make([]float32, M*W) // the set's rows of the sample's HR features
		for i, u := range set.tokens {
			copy(hdb[i*W:(i+1)*W], hd[(b*plan.M+u)*W:])
		}
		if bf16 { // narrow_bf16: the features' bits
			hdb = roundedTwin(hdb)
		}
		kHR, vHR := ropeRows(mulNT(hdb, wk, M, W, W), cos, sin, M, W, dh, false), mulNT(hdb, wv, M, W, W)
		qb, kb, vb := q[b*N*W:], k[b*N*W:], v[b*N*W:]
		keys := func(h, j int) []float32 { // column j of [K; K_hr] at head h
			if j < L {
				return kb[j*W+h*dh:][:dh]
			}
			return kHR[(j-L)*W+h*dh:][:dh]
		}
		kHRBack := kHR // what the backward pass reads: held in bfloat16 between the passes with BF16
		if bf16 {
			kHRBack = roundedTwin(kHR)
		}
		backKeys := func(h, j int) []float32 {
			if j < L {
				return kb[j*W+h*dh:][:dh]
			}
			return kHRBack[(j-L)*W+h*dh:][:dh]
		}
		vals := func(h, j int) []float32 {
			if j < L {
				return vb[j*W+h*dh:][:dh]
			}
			return vHR[(j-L)*W+h*dh:][:dh]
		}
		rows := flexRows(plan, sel[b]) // the rows whose second softmax the device computes
		R := len(rows)
		P := make([]float32, H*R*(L+M))
		for h := range H {
			for c, i64 := range rows {
				i := int(i64)
				row := P[(h*R+c)*(L+M):][:L+M]
				for j := range row {
					row[j] = scale * dot32(qb[i*W+h*dh:][:dh], keys(h, j))
				}
				seen := func(j int) bool {
					return j < min(i+1, L) || (j >= L && sel[b][i] != 0 && cells[(b*N+i)*G2+int(cellOf[j-L])] != 0)
				}
				twinMaskedSoftmax(row, seen)
			}
		}
		gr := make([]float32, L*W)
		for i := range L * W {
			gr[i] = alpha * sel[b][i/W] * up[b*N*W+i]
		}
		dkHR, dvHR := make([]float32, M*W), make([]float32, M*W)
		for h := range H {
			for c, i64 := range rows {
				i := int(i64)
				row := P[(h*R+c)*(L+M):][:L+M]
				mix := make([]float32, dh)
				for j, p := range row {
					for c := range dh {
						mix[c] += p * vals(h, j)[c]
					}
				}
				if sel[b][i] != 0 {
					out := o[(b*N+i)*W+h*dh:][:dh]
					for c := range out {
						out[c] = (1-alpha)*out[c] + alpha*mix[c]
					}
				}
				g := gr[i*W+h*dh:][:dh]
				ds := make([]float32, L+M)
				var rho float64
				for j := range ds {
					ds[j] = dot32(g, vals(h, j))
					rho += float64(row[j]) * float64(ds[j])
				}
				for j, p := range row {
					dvj := dv[(b*N+min(j, N-1))*W+h*dh:]
					if j >= L {
						dvj = dvHR[(j-L)*W+h*dh:]
					}
					for c := range dh {
						dvj[c] += p * g[c]
					}
					ds[j] = p * (ds[j] - float32(rho))
				}
				for j, s := range ds {
					dkj := dk[(b*N+min(j, N-1))*W+h*dh:]
					if j >= L {
						dkj = dkHR[(j-L)*W+h*dh:]
					}
					for c := range dh {
						dq[(b*N+i)*W+h*dh+c] += scale * s * backKeys(h, j)[c]
						dkj[c] += scale * s * qb[i*W+h*dh+c]
					}
				}
			}
		}
		dkPre := ropeRows(dkHR, cos, sin, M, W, dh, true)
		if bf16 { // hrWeightGrad's narrow: dk_hr always, dv_hr in the dense form
			dkPre = roundedTwin(dkPre)
			if plan.Dense {
				dvHR = roundedTwin(dvHR)
			}
		}
		for a := range W {
			for c := range W {
				for u := range M {
					dwk[a*W+c] += dkPre[u*W+a] * hdb[u*W+c]
					dwv[a*W+c] += dvHR[u*W+a] * hdb[u*W+c]
				}
			}
		}
	}
	return o, [5][]float32{dq, dk, dv, dwk, dwv}
}

// twinMaskedSoftmax is flex_softmax on one row: the entries seen, normalised; the others 0.
func twinMaskedSoftmax(row []float32, seen func(j int) bool) {
	mx := math.Inf(-1)
	for j, x := range row {
		if seen(j) {
			mx = math.Max(mx, float64(x))
		}
	}
	var sum float64
	for j, x := range row {
		row[j] = 0
		if seen(j) {
			row[j] = float32(math.Exp(float64(x - float32(mx))))
			sum += float64(row[j])
		}
	}
	inv := float32(1 / sum)
	for j := range row {
		row[j] *= inv
	}
}

// mulNT is x·wᵀ for x [rows, in] and w [out, in].
func mulNT(x, w []float32, rows, in, out int) []float32 {
	y := make([]float32, rows*out)
	for r := range rows {
		for o := range out {
			y[r*out+o] = dot32(x[r*in:][:in], w[o*in:][:in])
		}
	}
	return y
}

func dot32(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// ropeRows is the rope kernel over rows [rows, width] with tables [rows, dh] (one per row).
func ropeRows(x, cos, sin []float32, rows, width, dh int, transpose bool) []float32 {
	y, half := make([]float32, len(x)), dh/2
	for r := range rows {
		c, s := cos[r*dh:][:dh], sin[r*dh:][:dh]
		for at := r * width; at < (r+1)*width; at += dh {
			for i := range half {
				a, b := x[at+i], x[at+half+i]
				if transpose {
					y[at+i], y[at+half+i] = a*c[i]+b*s[half+i], b*c[half+i]-a*s[i]
				} else {
					y[at+i], y[at+half+i] = a*c[i]-b*s[i], b*c[half+i]+a*s[half+i]
				}
			}
		}
	}
	return y
}

// roundedTwin is a copy of x rounded to bfloat16 (narrow_bf16).
func roundedTwin(x []float32) []float32 {
	y := make([]float32, len(x))
	half.RoundToBF16(y, x)
	return y
}
