package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
)

// Pools pools each group of n consecutive rows of x [K·n, C] two ways and stacks the results: rows
// [0, K) are the column-wise maxima, rows [K, 2K) the means, [2K, C]. It feeds the vision tower's tag
// pretraining. Through the maximum the gradient reaches the few tokens that show the object at once, so the
// tower learns to see it within a few hundred steps; through the mean it learns to spread what it saw over
// all the image's tokens, where a decoder whose first attention is close to a mean can read it (alone, the
// mean sits on a plateau for hundreds of steps; alone, the maximum leaves features that only a decoder that
// already knows where to look can use). The maximum's gradient goes to its row (the first of equal ones).
func Pools(x *G.Node, n int, need bool) (*G.Node, error) {
	op := &fnOp{name: "Pools", diff: []bool{need}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || n <= 0 || in[0][0]%n != 0 {
			return nil, fmt.Errorf("ops: Pools: x %v is not groups of %d rows", in[0], n)
		}
		return tensor.Shape{2 * in[0][0] / n, in[0][1]}, nil
	}
	op.do = pick(poolsDo[float32](n), poolsDo[float64](n))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		back := &fnOp{name: "PoolsGrad", do: pick(poolsGradDo[float32](n), poolsGradDo[float64](n))}
		back.shape = func(s []tensor.Shape) (tensor.Shape, error) { return s[0].Clone(), nil }
		d, err := apply(back, 2, in[0], g)
		return G.Nodes{d}, err
	}
	return apply(op, 2, x)
}

// argmaxRow returns the row of x holding the maximum of column c over group k's rows.
func argmaxRow[T Float](x []T, n, C, k, c int) int {
	best := k * n
	for r := k*n + 1; r < (k+1)*n; r++ {
		if x[r*C+c] > x[best*C+c] {
			best = r
		}
	}
	return best
}

func poolsDo[T Float](n int) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, s := slice[T](v[0]), shapeOf(v[0])
		K, C := s[0]/n, s[1]
		out, y := alloc[T](m, 2*K, C)
		for k := 0; k < K; k++ {
			mx, mean := y[k*C:(k+1)*C], y[(K+k)*C:(K+k+1)*C]
			for c := range mx {
				mx[c] = x[argmaxRow(x, n, C, k, c)*C+c]
			}
			for r := k * n; r < (k+1)*n; r++ {
				AddTo(mean, x[r*C:(r+1)*C])
			}
			for c := range mean {
				mean[c] /= T(n)
			}
		}
		return out, nil
	}
}

func poolsGradDo[T Float](n int) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, g, s := slice[T](v[0]), slice[T](v[1]), shapeOf(v[0])
		K, C := s[0]/n, s[1]
		out, d := allocFull[T](m, s...)
		for r := 0; r < s[0]; r++ {
			gm := g[(K+r/n)*C : (K+r/n+1)*C]
			for c := range gm {
				d[r*C+c] = gm[c] / T(n)
			}
		}
		for k := 0; k < K; k++ {
			for c := 0; c < C; c++ {
				d[argmaxRow(x, n, C, k, c)*C+c] += g[k*C+c]
			}
		}
		return out, nil
	}
}

// HeadsCrossEntropy is the sum over heads of CrossEntropy on each head's columns: logits [R, ΣV_h] hold
// the heads side by side (head h has sizes[h] classes), and targets[h] [R] are head h's classes, llava.IgnoreIndex
// where a row has none. Each head is the mean over its rows with a target (0 without any), so a head that
// few rows answer weighs as much as one that all do.
func HeadsCrossEntropy(logits *G.Node, targets [][]int, sizes []int) (*G.Node, error) {
	op := &fnOp{name: "HeadsCrossEntropy", diff: []bool{true}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		return tensor.ScalarShape(), checkHeads(in[0], targets, sizes)
	}
	op.do = pick(headsXentDo[float32](targets, sizes), headsXentDo[float64](targets, sizes))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		back := &fnOp{name: "HeadsCrossEntropyGrad", exact: true, shape: sameShape,
			do: pick(headsXentGradDo[float32](targets, sizes), headsXentGradDo[float64](targets, sizes))}
		d, err := apply(back, 2, in[0], g)
		return G.Nodes{d}, err
	}
	return apply(op, 0, logits)
}

func checkHeads(s tensor.Shape, targets [][]int, sizes []int) error {
	total := 0
	for _, v := range sizes {
		total += v
	}
	if len(s) != 2 || s[1] != total || len(targets) != len(sizes) {
		return fmt.Errorf("ops: HeadsCrossEntropy: logits %v for heads of %v classes", s, sizes)
	}
	for h, ts := range targets {
		if len(ts) != s[0] {
			return fmt.Errorf("ops: HeadsCrossEntropy: head %d has %d targets for %d rows", h, len(ts), s[0])
		}
		for _, t := range ts {
			if t != llava.IgnoreIndex && (t < 0 || t >= sizes[h]) {
				return fmt.Errorf("ops: HeadsCrossEntropy: head %d target %d outside its %d classes", h, t, sizes[h])
			}
		}
	}
	return nil
}

// eachHead calls f with each head's column offset, classes and targets.
func eachHead(targets [][]int, sizes []int, f func(off, V int, ts []int)) {
	off := 0
	for h, V := range sizes {
		f(off, V, targets[h])
		off += V
	}
}

func headsXentDo[T Float](targets [][]int, sizes []int) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, W := slice[T](v[0]), shapeOf(v[0])[1]
		var loss float64
		eachHead(targets, sizes, func(off, V int, ts []int) {
			var l float64
			for r, t := range ts {
				if t != llava.IgnoreIndex {
					row := x[r*W+off : r*W+off+V]
					l += logSumExp(row) - float64(row[t])
				}
			}
			if n := supervised(ts); n > 0 {
				loss += l / float64(n)
			}
		})
		return scalarValue(dtypeOf[T](), loss), nil
	}
}

func headsXentGradDo[T Float](targets [][]int, sizes []int) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, g, W := slice[T](v[0]), float64(slice[T](v[1])[0]), shapeOf(v[0])[1]
		out, d := alloc[T](m, shapeOf(v[0])...)
		eachHead(targets, sizes, func(off, V int, ts []int) {
			n := float64(supervised(ts))
			for r, t := range ts {
				if t == llava.IgnoreIndex {
					continue
				}
				row, dr := x[r*W+off:r*W+off+V], d[r*W+off:r*W+off+V]
				lse := logSumExp(row)
				for i, xv := range row {
					dr[i] = T(math.Exp(float64(xv)-lse) / n * g)
				}
				dr[t] -= T(g / n)
			}
		})
		return out, nil
	}
}
