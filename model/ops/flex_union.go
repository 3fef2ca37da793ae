// The union form of FlexAttention (docs/DESIGN.md §7), the one training runs: per sample it projects and scores
// only the union of the HR tokens its rows selected, and computes a second softmax only for the HR rows
// that selected some. That softmax shares its plain scores with the first, so its plain part is the first's
// probabilities scaled by β = e^lse/Z and only the union's scores are computed; each row takes its HR values
// from the tokens it selected, as z·W'_Vᵀ with z the row's mean of their HR features, never projecting the
// union's values. It computes the dense form's numbers (flex_dense.go) up to the order of the sums.

package ops

import "math"

// unionCache is what the union form's forward pass keeps of one sample for its backward pass.
type unionCache[T Float] struct {
	hrUnion[T]
	pHR    []T // [H, R, U] each row's second-softmax probabilities over the union, 0 off its selection
	beta   []T // [H, R] the plain keys' share of each row's second softmax
	oPlain []T // [R, H·dh] the rows' plain outputs before the blend
	z      []T // [R, H, D] each row's second-softmax mean of its selected HR features, P_hr·hd
	y      []T // [H, R, dh] the HR part of each row's second softmax, P_hr·v_hr = z·W'_Vᵀ
}

// unionForward blends the second softmax of each HR row of hu into o:
// out = (1−α+α·β)·o_plain + α·P_hr·v_hr, with lse the plain scores' log-sum-exp [B, H, N].
func unionForward[T Float](hu hrUnion[T], lse, wv, o []T) *unionCache[T] {
	H, R, U, dh, W := hu.dims()
	m := hu.mem
	uc := &unionCache[T]{hrUnion: hu, oPlain: gatherRows(m, o, hu.plan.Layout, hu.b, hu.rows)}
	// Every element of these is written below before it is read.
	uc.pHR, uc.beta = lend[T](m, H*R*U, false), lend[T](m, H*R, false)
	uc.z, uc.y = lend[T](m, R*H*W, false), lend[T](m, H*R*dh, false)
	uc.scores(lse)
	uc.means()
	uc.blend(wv, o)
	return uc
}

// scores sets pHR to each row's second-softmax probabilities over the tokens it selected, from the union's
// scores q·k_hrᵀ/√dh, and beta to its plain keys' share (joinSoftmax).
func (uc *unionCache[T]) scores(lse []T) {
	H, R, U, dh, W := uc.dims()
	buf := get[T](uc.mem, U, false)
	defer Recycle(uc.mem, buf)
	scale := T(1 / math.Sqrt(float64(dh)))
	for h := 0; h < H; h++ {
		S := uc.pHR[h*R*U:][:R*U]
		matmulLD(false, true, R, U, dh, scale, uc.qr[h*dh:], W, uc.kHR[h*dh:], W, 0, S, U)
		for i, r := range uc.rows {
			uc.beta[h*R+i] = joinSoftmax(S[i*U:(i+1)*U], uc.sel[i], lse[(uc.b*H+h)*uc.plan.N+r], buf)
		}
	}
}

// joinSoftmax turns a row's union scores s into their probabilities in the row's second softmax, whose plain
// keys have log-sum-exp lse, and returns the plain keys' share β of it. Only the positions sel are computed
// (in buf); the others get 0.
func joinSoftmax[T Float](s []T, sel []int, lse T, buf []T) T {
	m, e := lse, buf[:len(sel)]
	for j, u := range sel {
		e[j] = s[u]
		m = max(m, s[u])
	}
	expShifted(e, m)
	a := math.Exp(float64(lse - m))
	z := a
	for _, x := range e {
		z += float64(x)
	}
	inv := T(1 / z)
	clear(s)
	for j, u := range sel {
		s[u] = e[j] * inv
	}
	return T(a / z)
}

// means sets z_i = P_i·hd_sel(i) [H, D] for every row i: its second-softmax probabilities over the tokens it
// selected, every head at once, times those tokens' HR features.
func (uc *unionCache[T]) means() {
	H, _, _, _, D := uc.dims()
	most, vector := uc.mostSelected(), selectedVector[T](H, D)
	// Every row's part of these is written before it is read; xs holds its gathered rows for the GEMM path.
	ps, xs := get[T](uc.mem, H*most, false), gemmGather[T](uc.mem, vector, most*D)
	defer Recycle(uc.mem, xs, ps)
	for i, sel := range uc.sel {
		k, z := len(sel), uc.z[i*H*D:][:H*D]
		p := ps[:H*k]
		if vector {
			uc.selectedProbs(p, i, 1, H) // [k, H], as the vector kernel reads them
			meansVector(z, p, uc.hdU, sel, D)
			continue
		}
		uc.selectedProbs(p, i, k, 1) // [H, k]
		x := xs[:k*D]
		copyRows(x, uc.hdU, sel, D)
		matmul(false, false, H, D, k, 1, p, x, 0, z)
	}
}

// selectedProbs copies row i's probabilities of the tokens it selected into p: head h, token j at h·hs + j·js.
func (uc *unionCache[T]) selectedProbs(p []T, i, hs, js int) {
	H, R, U, _, _ := uc.dims()
	for h := 0; h < H; h++ {
		row := uc.pHR[(h*R+i)*U:][:U]
		for j, u := range uc.sel[i] {
			p[h*hs+j*js] = row[u]
		}
	}
}

// blend sets y = z·W'_Vᵀ per head and blends each row's output: o = (1−α+α·β)·o_plain + α·y.
func (uc *unionCache[T]) blend(wv, o []T) {
	H, R, _, dh, W := uc.dims()
	alpha, N := T(uc.plan.Alpha), uc.plan.N
	for h := 0; h < H; h++ {
		Y := uc.y[h*R*dh:][:R*dh]
		matmulLD(false, true, R, dh, W, 1, uc.z[h*W:], H*W, wv[h*dh*W:], W, 0, Y, dh)
		for i, r := range uc.rows {
			or, c := o[(uc.b*N+r)*W+h*dh:][:dh], 1-alpha+alpha*uc.beta[h*R+i]
			for d := range or {
				or[d] = c*or[d] + alpha*Y[i*dh+d]
			}
		}
	}
}

// gemmGather is the buffer of n values the per-row GEMMs gather a row's selected features into, or nil
// when the vector kernels read them in place.
func gemmGather[T Float](m *Arena, vector bool, n int) []T {
	if vector {
		return nil
	}
	return get[T](m, n, false)
}

// mostSelected is the largest number of tokens a row selected.
func (hu *hrUnion[T]) mostSelected() int {
	most := 0
	for _, sel := range hu.sel {
		most = max(most, len(sel))
	}
	return most
}

// plainTerms: a selecting row's second softmax shares the plain scores, so its plain part goes back with
// the first: c_r = 1−α+α·β and shift_r = α·β·g·(y − (1−β)·o_plain).
func (uc *unionCache[T]) plainTerms(h int, g []T, w []float64) []float64 {
	_, R, _, dh, W := uc.dims()
	alpha, shift := uc.plan.Alpha, Scratch[float64](uc.mem, uc.plan.N)
	for i, r := range uc.rows {
		gr := g[(uc.b*uc.plan.N+r)*W+h*dh:][:dh]
		be := float64(uc.beta[h*R+i])
		gp, gy := dot(gr, uc.oPlain[i*W+h*dh:][:dh]), dot(gr, uc.y[(h*R+i)*dh:][:dh])
		w[r], shift[r] = 1-alpha+alpha*be, alpha*be*(gy-(1-be)*gp)
	}
	return shift
}

// backward backpropagates α·P_hr·v_hr = α·z·W'_Vᵀ of the sample's rows into q and the HR weights: W'_V
// through z, W'_K through the union's keys. The plain part of their second softmax went back with the first
// (plainTerms).
func (uc *unionCache[T]) backward(t *attnBack[T], dwk, dwv []T) {
	H, R, U, dh, W := uc.dims()
	m := uc.mem
	// Every element of these is written before it is read (dS is cleared row by row, each head's columns
	// of dkHR and of dW'_V once).
	gr, dz := get[T](m, H*R*dh, false), get[T](m, R*H*W, false) // α·g [H, R, dh]; ∂L/∂z [R, H, D]
	dS, dkHR := get[T](m, H*R*U, false), get[T](m, U*W, false)
	defer Recycle(m, gr, dz, dS, dkHR)
	uc.valueGrads(t.g, t.wv, gr, dz, dwv)
	uc.scoreGrads(gr, dz, dS)
	uc.queryKeyGrads(dS, t.dq, dkHR)
	uc.weightGrads(dkHR, nil, dwk, nil)
}

// valueGrads sets gr [H, R, dh] to α·g at the rows, dz = ∂L/∂z = gr·W'_V and dW'_V = grᵀ·z, head by head.
func (uc *unionCache[T]) valueGrads(g, wv, gr, dz, dwv []T) {
	H, R, _, dh, W := uc.dims()
	alpha, N := T(uc.plan.Alpha), uc.plan.N
	for h := 0; h < H; h++ {
		G := gr[h*R*dh:][:R*dh]
		for i, r := range uc.rows {
			for d, x := range g[(uc.b*N+r)*W+h*dh:][:dh] {
				G[i*dh+d] = alpha * x
			}
		}
		matmulLD(false, false, R, W, dh, 1, G, dh, wv[h*dh*W:], W, 0, dz[h*W:], H*W)
		matmulLD(true, false, dh, W, R, 1, G, dh, uc.z[h*W:], H*W, 0, dwv[h*dh*W:], W)
	}
}

// scoreGrads sets dS [H, R, U] to the gradient of the rows' HR scores: for row i and a token j it selected,
// p_j·(dp_j − g·(β·o_plain + y)) with dp_j = dz_i·hd_j, the softmax backward over the row's second softmax
// (its plain part's share went back with the first); 0 elsewhere.
func (uc *unionCache[T]) scoreGrads(gr, dz, dS []T) {
	H, _, _, _, W := uc.dims()
	most, vector := uc.mostSelected(), selectedVector[T](H, W)
	// Every row's part of these is written before it is read; xs holds its gathered rows for the GEMM path.
	dps, xs := get[T](uc.mem, H*most, false), gemmGather[T](uc.mem, vector, most*W)
	defer Recycle(uc.mem, xs, dps)
	for i := range uc.sel {
		dp, hs, js := uc.selectedDots(dps, xs, dz, i, vector)
		uc.rowScoreGrads(i, dp, hs, js, gr, dS)
	}
}

// selectedDots returns dp_j = dz_i·hd_j for every head and each token j row i selected, head h and token j
// at h·hs + j·js: [H, k] by a GEMM over the rows gathered into xs, or [k, H] from the vector kernel.
func (uc *unionCache[T]) selectedDots(dps, xs, dz []T, i int, vector bool) (dp []T, hs, js int) {
	H, _, _, _, W := uc.dims()
	sel := uc.sel[i]
	k := len(sel)
	dp = dps[:H*k]
	if vector {
		dotsVector(dp, dz[i*H*W:][:H*W], uc.hdU, sel, W)
		return dp, 1, H
	}
	x := xs[:k*W]
	copyRows(x, uc.hdU, sel, W)
	matmul(false, true, H, k, W, 1, dz[i*H*W:][:H*W], x, 0, dp)
	return dp, k, 1
}

// rowScoreGrads sets row i's part of dS from its dots dp (strides hs, js) and α·g in gr (scoreGrads).
func (uc *unionCache[T]) rowScoreGrads(i int, dp []T, hs, js int, gr, dS []T) {
	H, R, U, dh, W := uc.dims()
	for h := 0; h < H; h++ {
		G := gr[(h*R+i)*dh:][:dh] // α·g of the row
		gSel := T(float64(uc.beta[h*R+i])*dot(G, uc.oPlain[i*W+h*dh:][:dh]) + dot(G, uc.y[(h*R+i)*dh:][:dh]))
		row, p := dS[(h*R+i)*U:][:U], uc.pHR[(h*R+i)*U:][:U]
		clear(row)
		for j, u := range uc.sel[i] {
			row[u] = p[u] * (dp[h*hs+j*js] - gSel)
		}
	}
}

// queryKeyGrads backpropagates the HR scores' gradient dS into the rows of dq and into dkHR [U, D].
func (uc *unionCache[T]) queryKeyGrads(dS, dq, dkHR []T) {
	H, R, U, dh, W := uc.dims()
	dqr := get[T](uc.mem, R*dh, false) // set by each head's product (β = 0)
	defer Recycle(uc.mem, dqr)
	scale := T(1 / math.Sqrt(float64(dh)))
	for h := 0; h < H; h++ {
		dSh := dS[h*R*U:][:R*U]
		matmulLD(false, false, R, dh, U, scale, dSh, U, uc.kHR[h*dh:], W, 0, dqr, dh)
		uc.addRows(dq, dqr, h)
		matmulLD(true, false, U, dh, R, scale, dSh, U, uc.qr[h*dh:], W, 0, dkHR[h*dh:], W)
	}
}
