package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
)

// CrossEntropy is the mean over rows with a target of −log softmax(logits[r])[target[r]], for logits [R, V]
// and targets [R] (llava.IgnoreIndex where there is none). It is a scalar; with no target at all it is 0.
func CrossEntropy(logits *G.Node, targets []int) (*G.Node, error) {
	op := &fnOp{name: "CrossEntropy", diff: []bool{true}, args: &XentArgs{Targets: targets}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || in[0][0] != len(targets) {
			return nil, fmt.Errorf("ops: CrossEntropy: logits %v for %d targets", in[0], len(targets))
		}
		for _, t := range targets {
			if t != llava.IgnoreIndex && (t < 0 || t >= in[0][1]) {
				return nil, fmt.Errorf("ops: CrossEntropy: target %d outside the vocabulary of %d", t, in[0][1])
			}
		}
		return tensor.ScalarShape(), nil
	}
	lse := make([]float64, len(targets)) // per row, its log-sum-exp: the forward pass leaves it for the backward
	op.do = pick(xentDo[float32](targets, lse), xentDo[float64](targets, lse))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		back := &fnOp{name: "CrossEntropyGrad", args: op.args, exact: true, shape: sameShape, do: pick(xentGradDo[float32](targets, lse), xentGradDo[float64](targets, lse))}
		d, err := apply(back, 2, in[0], g)
		return G.Nodes{d}, err
	}
	return apply(op, 0, logits)
}

func supervised(targets []int) int {
	n := 0
	for _, t := range targets {
		if t != llava.IgnoreIndex {
			n++
		}
	}
	return n
}

// xentDo sums the rows' losses in row order, each row's log-sum-exp (kept in lse) computed on all cores.
func xentDo[T Float](targets []int, lse []float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x := slice[T](v[0])
		V := shapeOf(v[0])[1]
		parallel(len(targets), func(r int) {
			if targets[r] != llava.IgnoreIndex {
				lse[r] = logSumExp(x[r*V : (r+1)*V])
			}
		})
		var loss float64
		for r, t := range targets {
			if t != llava.IgnoreIndex {
				loss += lse[r] - float64(x[r*V+t])
			}
		}
		if n := supervised(targets); n > 0 {
			loss /= float64(n)
		}
		return scalarValue(dtypeOf[T](), loss), nil
	}
}

// xentGradDo: ∂/∂logits = (softmax − onehot(target)) / count, times the upstream scalar, the rows on all
// cores, with the forward pass's log-sum-exp of each.
func xentGradDo[T Float](targets []int, lse []float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, g := slice[T](v[0]), slice[T](v[1])[0]
		V := shapeOf(v[0])[1]
		out, d := alloc[T](m, shapeOf(v[0])...)
		n := supervised(targets)
		parallel(len(targets), func(r int) {
			t := targets[r]
			if t == llava.IgnoreIndex {
				return
			}
			row, dr := x[r*V:(r+1)*V], d[r*V:(r+1)*V]
			for i, xv := range row {
				dr[i] = T(math.Exp(float64(xv)-lse[r]) / float64(n) * float64(g))
			}
			dr[t] -= T(float64(g) / float64(n))
		})
		return out, nil
	}
}

func logSumExp[T Float](x []T) float64 {
	m := float64(x[0])
	for _, v := range x[1:] {
		m = math.Max(m, float64(v))
	}
	var s float64
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}
