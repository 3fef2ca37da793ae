package gpu

import "github.com/flextrain/flextrain/model/ops"

// The host's part of the device's FlexAttention: which rows and HR tokens take part, read from the plan
// and the selection, as ops.FlexAttention's dense form reads them.

// selectingRows flags sample b's real rows that are HR rows with a selection (some HR token among the cells
// they selected): 1, else 0; nil when there is none.
func selectingRows(plan *ops.FlexPlan, b int, cells []float32) []float32 {
	G2, any := plan.Cells.G*plan.Cells.G, false
	out := make([]float32, plan.Lens[b])
	for _, r := range plan.Rows[b] {
		c := cells[(b*plan.N+r)*G2:][:G2]
		if r < len(out) && len(plan.Cells.Tokens(func(i int) bool { return c[i] != 0 })) > 0 {
			out[r], any = 1, true
		}
	}
	if !any {
		return nil
	}
	return out
}

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
