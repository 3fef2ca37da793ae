package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// RMSNorm is y = x / sqrt(mean(x²) + eps) · w over the last axis of x [R, D], with w [D] (docs/DESIGN.md §6).
func RMSNorm(x, w *G.Node, eps float64, needX, needW bool) (*G.Node, error) {
	op := &fnOp{name: "RMSNorm", diff: []bool{needX, needW}, args: NormArgs{eps}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || len(in[1]) != 1 || in[0][1] != in[1][0] {
			return nil, fmt.Errorf("ops: RMSNorm: x %v and w %v do not fit", in[0], in[1])
		}
		return in[0].Clone(), nil
	}
	op.do = pick(rmsDo[float32](eps), rmsDo[float64](eps))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := G.Nodes{nil, nil}
		var err error
		if needX {
			gx := &fnOp{name: "RMSNormGradX", args: op.args, exact: true, shape: sameShape, do: pick(rmsGradXDo[float32](eps), rmsGradXDo[float64](eps))}
			if res[0], err = apply(gx, 2, in[0], in[1], g); err != nil {
				return nil, err
			}
		}
		if needW {
			gw := &fnOp{name: "RMSNormGradW", args: op.args, exact: true, do: pick(rmsGradWDo[float32](eps), rmsGradWDo[float64](eps))}
			gw.shape = func(in []tensor.Shape) (tensor.Shape, error) { return tensor.Shape{in[0][1]}, nil }
			if res[1], err = apply(gw, 1, in[0], g); err != nil {
				return nil, err
			}
		}
		return res, nil
	}
	return apply(op, 2, x, w)
}

// rms returns 1/sqrt(mean(x²)+eps) of one row, accumulated in float64.
func rms[T Float](x []T, eps float64) float64 {
	return 1 / math.Sqrt(dot64(x, x)/float64(len(x))+eps)
}

func rmsDo[T Float](eps float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, w := slice[T](v[0]), slice[T](v[1])
		D := len(w)
		out, y := allocFull[T](m, shapeOf(v[0])...)
		parallelRange(len(x)/D, grain/D, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, yr := x[r*D:(r+1)*D], y[r*D:(r+1)*D]
				s := T(rms(xr, eps))
				for i := range xr {
					yr[i] = xr[i] * s * w[i]
				}
			}
		})
		return out, nil
	}
}

// rmsGradXDo: dx_i = s·g_i·w_i − s³/D · x_i · Σ_j g_j·w_j·x_j.
func rmsGradXDo[T Float](eps float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, w, g := slice[T](v[0]), slice[T](v[1]), slice[T](v[2])
		D := len(w)
		out, dx := allocFull[T](m, shapeOf(v[0])...)
		parallelRange(len(x)/D, grain/D, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, gr, dr := x[r*D:(r+1)*D], g[r*D:(r+1)*D], dx[r*D:(r+1)*D]
				s := rms(xr, eps)
				var dot float64
				for i := range xr {
					dot += float64(gr[i]) * float64(w[i]) * float64(xr[i])
				}
				c := s * s * s / float64(D) * dot
				for i := range xr {
					dr[i] = T(s*float64(gr[i])*float64(w[i]) - c*float64(xr[i]))
				}
			}
		})
		return out, nil
	}
}

// rmsGradWDo: dw_i = Σ_rows g_i·x_i·s.
func rmsGradWDo[T Float](eps float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, g := slice[T](v[0]), slice[T](v[1])
		D := shapeOf(v[0])[1]
		rows := len(x) / D
		s, acc := get[float64](m, rows, false), Scratch[float64](m, D)
		defer Recycle(m, s, acc)
		parallelRange(rows, grain/D, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				s[r] = rms(x[r*D:(r+1)*D], eps)
			}
		})
		// Each core sums its own columns over all rows, in row order: the bits do not depend on the cut.
		parallelRange(D, 64, func(lo, hi int) {
			for r := 0; r < rows; r++ {
				xr, gr := x[r*D:(r+1)*D], g[r*D:(r+1)*D]
				for i := lo; i < hi; i++ {
					acc[i] += float64(gr[i]) * float64(xr[i]) * s[r]
				}
			}
		})
		out, dw := allocFull[T](m, D)
		for i := range dw {
			dw[i] = T(acc[i])
		}
		return out, nil
	}
}

// LayerNorm is the CLIP LayerNorm over the last axis, forward only (the vision tower is frozen), the rows
// shared among the cores.
func LayerNorm[T Float](y, x, w, b []T, D int, eps float64) {
	parallelRange(len(x)/D, max(1, grain/D), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			layerNormRow(y[r*D:(r+1)*D], x[r*D:(r+1)*D], w, b, eps)
		}
	})
}

func layerNormRow[T Float](y, x, w, b []T, eps float64) {
	var mean, vs float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	for _, v := range x {
		d := float64(v) - mean
		vs += d * d
	}
	inv := 1 / math.Sqrt(vs/float64(len(x))+eps)
	for i, v := range x {
		y[i] = T((float64(v)-mean)*inv)*w[i] + b[i]
	}
}
