package gpu

import "github.com/flextrain/flextrain/model/ops"

// The host's part of the device's FlexAttention: which rows and HR tokens take part, read from the plan
// and the selection, as ops.FlexAttention's dense form reads them.

// cellsOf is the selection cell of each of the M HR tokens (ops.CellGrid.Cell), row-major.
func cellsOf(plan *ops.FlexPlan) []int64 {
	zg, out := plan.Cells.Zg, make([]int64, plan.M)
	for u := range out {
		out[u] = int64(plan.Cells.Cell(u/zg, u%zg))
	}
	return out
}

// narrow rounds float64 tables to float32, as the CPU ops convert them.
func narrow(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// scaled is v times a.
func scaled(v []float32, a float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * a
	}
	return out
}

// hrSet is what sample b's FlexAttention computes with: its selecting rows (rowsel, over its real rows: 1
// for an HR row that selected some HR token, else 0), and the HR tokens: all M in the dense form, else the
// union of the tokens its selecting rows chose (the union form: the others' keys and values are never
// needed), increasing; with each token's selection cell and its rows of the sample's RoPE tables [M, dh].
type hrSet struct {
	rowsel   []float32
	tokens   []int
	cellOf   []int64
	cos, sin []float32
}

// hrSetOf reads sample b's hrSet from the plan and the selection cells [B·N, G²]; its rowsel is nil, and
// nothing else is read, when no row selected a token.
func hrSetOf(plan *ops.FlexPlan, b int, cells []float32) hrSet {
	G2, dh := plan.Cells.G*plan.Cells.G, plan.HeadDim
	in := make([]bool, plan.M)
	var s hrSet
	for _, r := range plan.Rows[b] {
		c := cells[(b*plan.N+r)*G2:][:G2]
		toks := plan.Cells.Tokens(func(i int) bool { return c[i] != 0 })
		if r >= plan.Lens[b] || len(toks) == 0 {
			continue
		}
		if s.rowsel == nil {
			s.rowsel = make([]float32, plan.Lens[b])
		}
		s.rowsel[r] = 1
		for _, u := range toks {
			in[u] = true
		}
	}
	if s.rowsel == nil {
		return s
	}
	all := cellsOf(plan)
	cos, sin := plan.RopeCos[b], plan.RopeSin[b]
	for u := range plan.M {
		if plan.Dense || in[u] {
			s.tokens, s.cellOf = append(s.tokens, u), append(s.cellOf, all[u])
			s.cos, s.sin = append(s.cos, narrow(cos[u*dh:(u+1)*dh])...), append(s.sin, narrow(sin[u*dh:(u+1)*dh])...)
		}
	}
	return s
}

// selectKeys is the number of keys each HR row of sample b sees (the selection's causal rows).
func selectKeys(plan *ops.SelectPlan, b int) []int64 {
	L := plan.Lens[b]
	keys := make([]int64, len(plan.Rows[b]))
	for i, r := range plan.Rows[b] {
		keys[i] = int64(L)
		if !plan.Full {
			keys[i] = int64(min(r+1, L))
		}
	}
	return keys
}

// flexRows are the rows of a sample whose second softmax the device computes: every real row in the dense
// form (the official implementation's cost; only the HR rows with a selection blend), the HR rows with a
// selection (rowsel ≠ 0) in the union form.
func flexRows(plan *ops.FlexPlan, rowsel []float32) []int64 {
	var rows []int64
	for i, r := range rowsel {
		if plan.Dense || r != 0 {
			rows = append(rows, int64(i))
		}
	}
	return rows
}
