package ops

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// flexFixture is a small FlexAttention problem: 2 samples of 6 rows (the second with 5 real), 2 heads of 4,
// a 4×4 HR grid in 2×2 cells, HR rows with full, partial and empty selections.
type flexFixture struct {
	plan   *FlexPlan
	inputs []*tensor.Dense // q, k, v, wk, wv, hd, cells
}

func newFlexFixture(alpha float64) flexFixture {
	rng := rand.New(rand.NewPCG(3, 4))
	const B, N, H, dh, M, nc = 2, 6, 2, 4, 16, 4
	lay := Layout{B: B, N: N, Lens: []int{6, 5}, Heads: H, HeadDim: dh}
	cos, sin := RopeTables(M, dh, 10000)
	plan := &FlexPlan{Layout: lay, Alpha: alpha, Rows: [][]int{{2, 3, 5}, {1, 4}}, M: M, Cells: CellGrid{G: 2, Zg: 4},
		RopeCos: [][]float64{cos, cos}, RopeSin: [][]float64{sin, sin}}
	cells := newDense(tensor.Float64, B*N, nc)
	sel := map[int][]int{2: {0, 3}, 3: {0, 1, 2, 3}, 5: {}, N + 1: {2}, N + 4: {1, 2}}
	for r, cs := range sel {
		for _, c := range cs {
			cells.Data().([]float64)[r*nc+c] = 1
		}
	}
	cells.Data().([]float64)[4*nc] = 1 // row 4 of sample 0 is no HR row: its cells must be ignored
	w := H * dh
	return flexFixture{plan: plan, inputs: []*tensor.Dense{randDense(rng, 1, B*N, w), randDense(rng, 1, B*N, w),
		randDense(rng, 1, B*N, w), randDense(rng, 0.5, w, w), randDense(rng, 0.5, w, w), randDense(rng, 1, B*M, w), cells}}
}

func (f flexFixture) build(in []*G.Node) (*G.Node, error) {
	return FlexAttention(in[0], in[1], in[2], in[3], in[4], in[5], in[6], f.plan, true)
}

func TestFlexAttentionGradient(t *testing.T) {
	for _, alpha := range []float64{0.3, 1} {
		f := newFlexFixture(alpha)
		gradCheck(t, f.build, f.inputs, []int{0, 1, 2, 3, 4}, []int{12, 8}, 1e-7)
	}
}

// TestFlexUnionEqualsDense checks the union computation against docs/DESIGN.md §7 written literally: scores over
// all N keys and all M HR keys, two masked softmaxes, the blend.
func TestFlexUnionEqualsDense(t *testing.T) {
	for _, alpha := range []float64{0.5, 1} {
		f := newFlexFixture(alpha)
		g := G.NewGraph()
		var nodes []*G.Node
		for i, in := range f.inputs {
			nodes = append(nodes, G.NodeFromAny(g, in, G.WithName(string(rune('a'+i)))))
		}
		out, err := f.build(nodes)
		if err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		union := out.Value().Data().([]float64)
		dense := denseFlex(f)
		worst := 0.0
		for i := range dense {
			worst = math.Max(worst, math.Abs(union[i]-dense[i]))
		}
		t.Logf("alpha %.1f: max |union − dense| = %.2e", alpha, worst)
		if worst > 1e-12 {
			t.Errorf("alpha %.1f: union and dense differ by %.2e > 1e-12", alpha, worst)
		}
		vm.Close()
	}
}

// hrKeysValues are the rotated HR keys rope_hr(hd·W'_Kᵀ) and the HR values hd·W'_Vᵀ [M, H·dh] of sample b.
func hrKeysValues(p *FlexPlan, b int, hd, wk, wv []float64) (khr, vhr []float64) {
	M, dh, w := p.M, p.HeadDim, p.Heads*p.HeadDim
	pre := make([]float64, M*w)
	khr, vhr = make([]float64, M*w), make([]float64, M*w)
	MatMulNT(pre, hd[b*M*w:(b+1)*M*w], wk, M, w, w)
	MatMulNT(vhr, hd[b*M*w:(b+1)*M*w], wv, M, w, w)
	for m := 0; m < M; m++ {
		for h := 0; h < w; h += dh {
			RopeRow(khr[m*w+h:m*w+h+dh], pre[m*w+h:m*w+h+dh], p.RopeCos[b][m*dh:(m+1)*dh], p.RopeSin[b][m*dh:(m+1)*dh], false)
		}
	}
	return khr, vhr
}

// denseFlex is the dense oracle of FlexAttention in float64.
func denseFlex(f flexFixture) []float64 {
	p := f.plan
	q, k, v := f.inputs[0].Data().([]float64), f.inputs[1].Data().([]float64), f.inputs[2].Data().([]float64)
	wk, wv, hd, cells := f.inputs[3].Data().([]float64), f.inputs[4].Data().([]float64), f.inputs[5].Data().([]float64), f.inputs[6].Data().([]float64)
	H, dh, N, M := p.Heads, p.HeadDim, p.N, p.M
	w := H * dh
	out := make([]float64, p.B*N*w)
	for b := 0; b < p.B; b++ {
		khr, vhr := hrKeysValues(p, b, hd, wk, wv)
		isRow := map[int]bool{}
		for _, r := range p.Rows[b] {
			isRow[r] = true
		}
		for r := 0; r < N; r++ {
			sel := make([]bool, M)
			any := false
			if isRow[r] {
				c := cells[(b*N+r)*4 : (b*N+r+1)*4]
				for _, m := range p.Cells.Tokens(func(i int) bool { return c[i] != 0 }) {
					sel[m], any = true, true
				}
			}
			for h := 0; h < H; h++ {
				qr := q[(b*N+r)*w+h*dh:][:dh]
				s := make([]float64, N+M)
				okPlain, okSel := make([]bool, N+M), make([]bool, N+M)
				for j := 0; j < N; j++ {
					s[j] = dot(qr, k[(b*N+j)*w+h*dh:][:dh]) / math.Sqrt(float64(dh))
					okPlain[j] = j <= r && j < p.Lens[b]
					okSel[j] = okPlain[j]
				}
				for m := 0; m < M; m++ {
					s[N+m] = dot(qr, khr[m*w+h*dh:][:dh]) / math.Sqrt(float64(dh))
					okSel[N+m] = sel[m]
				}
				o := out[(b*N+r)*w+h*dh:][:dh]
				pp := denseSoftmax(s, okPlain)
				ps := pp
				if any {
					ps = denseSoftmax(s, okSel)
				}
				a := 0.0
				if isRow[r] {
					a = p.Alpha
				}
				for j := 0; j < N+M; j++ {
					vj := v[(b*N+min(j, N-1))*w+h*dh:][:dh]
					if j >= N {
						vj = vhr[(j-N)*w+h*dh:][:dh]
					}
					for d := range o {
						o[d] += ((1-a)*pp[j] + a*ps[j]) * vj[d]
					}
				}
			}
		}
	}
	return out
}

func denseSoftmax(s []float64, ok []bool) []float64 {
	m := math.Inf(-1)
	for i, v := range s {
		if ok[i] {
			m = math.Max(m, v)
		}
	}
	p := make([]float64, len(s))
	var z float64
	for i, v := range s {
		if ok[i] {
			p[i] = math.Exp(v - m)
			z += p[i]
		}
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

// TestAttendRowMatchesFlexAttention checks the reference row against the op, in its union and its dense
// form: every row of the fixture (HR rows with a selection, with an empty one, plain and padded rows),
// given the plain keys the row sees and the HR keys and values of the tokens it selected, gets the op's
// output, and its plain probabilities are the plain softmax of its scores.
func TestAttendRowMatchesFlexAttention(t *testing.T) {
	for _, dense := range []bool{false, true} {
		f := newFlexFixture(0.6)
		f.plan.Dense = dense
		got := runFlex(t, f)
		p := f.plan
		q, k, v := f.inputs[0].Data().([]float64), f.inputs[1].Data().([]float64), f.inputs[2].Data().([]float64)
		hd, cells := f.inputs[5].Data().([]float64), f.inputs[6].Data().([]float64)
		w, nc := p.Heads*p.HeadDim, p.Cells.G*p.Cells.G
		worst := 0.0
		for b := 0; b < p.B; b++ {
			khr, vhr := hrKeysValues(p, b, hd, f.inputs[3].Data().([]float64), f.inputs[4].Data().([]float64))
			for r := 0; r < p.N; r++ {
				var toks []int
				if slices.Contains(p.Rows[b], r) {
					c := cells[(b*p.N+r)*nc:][:nc]
					toks = p.Cells.Tokens(func(i int) bool { return c[i] != 0 })
				}
				nk, row := p.keys(b, r), b*p.N+r
				kSel, vSel := make([]float64, len(toks)*w), make([]float64, len(toks)*w)
				copyRows(kSel, khr, toks, w)
				copyRows(vSel, vhr, toks, w)
				out, probs := make([]float64, w), make([]float64, p.Heads*nk)
				AttendRow(out, q[row*w:(row+1)*w], k[b*p.N*w:][:nk*w], v[b*p.N*w:][:nk*w], p.Heads, kSel, vSel, p.Alpha, probs)
				for i, x := range out {
					worst = math.Max(worst, math.Abs(x-got[row*w+i]))
				}
				checkPlainProbs(t, probs, q[row*w:(row+1)*w], k[b*p.N*w:][:nk*w], p.Heads)
			}
		}
		t.Logf("dense %v: max |AttendRow − FlexAttention| = %.2e", dense, worst)
		if worst > 1e-12 {
			t.Errorf("dense %v: AttendRow and FlexAttention differ by %.2e > 1e-12", dense, worst)
		}
	}
}

// runFlex runs the fixture's FlexAttention forward and returns its output.
func runFlex(t *testing.T, f flexFixture) []float64 {
	t.Helper()
	g := G.NewGraph()
	var nodes []*G.Node
	for i, in := range f.inputs {
		nodes = append(nodes, G.NodeFromAny(g, in, G.WithName(string(rune('a'+i)))))
	}
	out, err := f.build(nodes)
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	return out.Value().Data().([]float64)
}

// checkPlainProbs fails unless probs [H, n] are softmax(q·kᵀ/√dh) per head over the n keys k.
func checkPlainProbs(t *testing.T, probs, q, k []float64, heads int) {
	t.Helper()
	w := len(q)
	dh, n := w/heads, len(k)/w
	for h := 0; h < heads; h++ {
		s, ok := make([]float64, n), make([]bool, n)
		for j := range s {
			s[j], ok[j] = dot(q[h*dh:(h+1)*dh], k[j*w+h*dh:][:dh])/math.Sqrt(float64(dh)), true
		}
		for j, want := range denseSoftmax(s, ok) {
			if d := math.Abs(probs[h*n+j] - want); d > 1e-14 {
				t.Fatalf("head %d key %d: probability %v, want %v", h, j, probs[h*n+j], want)
			}
		}
	}
}
