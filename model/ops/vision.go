package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The operations of a trainable CLIP tower (docs/DESIGN.md §3): a reshape for the patch weight, the class and
// position embeddings, LayerNorm and QuickGELU with gradients, and a row gather that drops the CLS rows.

// Reshape returns x's values in the given shape (the same number of elements, row-major order kept): the
// patch weight [Cv, 3, P, P] seen as the matrix [Cv, 3·P·P] of its Linear. The gradient is reshaped back.
func Reshape(x *G.Node, shape ...int) (*G.Node, error) {
	to := tensor.Shape(append([]int(nil), shape...))
	op := &fnOp{name: "Reshape", diff: []bool{true}, args: ReshapeArgs{to.Clone()}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if in[0].TotalSize() != to.TotalSize() {
			return nil, fmt.Errorf("ops: Reshape: %v has %d elements, %v wants %d", in[0], in[0].TotalSize(), to, to.TotalSize())
		}
		return to.Clone(), nil
	}
	op.do = pick(reshapeDo[float32](to), reshapeDo[float64](to))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		back, err := Reshape(g, in[0].Shape()...)
		return G.Nodes{back}, err
	}
	return apply(op, len(to), x)
}

func reshapeDo[T Float](to tensor.Shape) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		out, y := allocFull[T](m, to...)
		copy(y, slice[T](v[0]))
		return out, nil
	}
}

// EmbedSpec says which inputs of ClassPosEmbed need a gradient.
type EmbedSpec struct{ Patch, Class, Pos bool }

// ClassPosEmbed builds the CLIP embeddings of `images` images from their patch embeddings patch
// [images·n, C], the class embedding cls [C] and the position embedding pos [n+1, C]: image k owns rows
// [k·(n+1), (k+1)·(n+1)) of the output, the first being cls + pos[0] and row 1+i being patch[k·n+i] + pos[1+i].
func ClassPosEmbed(patch, cls, pos *G.Node, images int, need EmbedSpec) (*G.Node, error) {
	op := &fnOp{name: "ClassPosEmbed", diff: []bool{need.Patch, need.Class, need.Pos}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		p, c, q := in[0], in[1], in[2]
		if len(p) != 2 || len(c) != 1 || len(q) != 2 || images < 1 || p[0] != images*(q[0]-1) || p[1] != c[0] || q[1] != c[0] {
			return nil, fmt.Errorf("ops: ClassPosEmbed: patch %v, class %v, position %v do not fit %d images", p, c, q, images)
		}
		return tensor.Shape{images * q[0], c[0]}, nil
	}
	op.do = pick(embedDo[float32](images), embedDo[float64](images))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := make(G.Nodes, 3)
		var err error
		for i, want := range []bool{need.Patch, need.Class, need.Pos} {
			if want {
				if res[i], err = embedGrad(g, in[i].Shape(), images, i); err != nil {
					return nil, err
				}
			}
		}
		return res, nil
	}
	return apply(op, 2, patch, cls, pos)
}

func embedDo[T Float](images int) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		patch, cls, pos := slice[T](v[0]), slice[T](v[1]), slice[T](v[2])
		C := len(cls)
		tokens := len(pos) / C
		out, y := allocFull[T](m, images*tokens, C)
		for k := 0; k < images; k++ {
			img := y[k*tokens*C : (k+1)*tokens*C]
			copy(img[:C], cls)
			copy(img[C:], patch[k*(tokens-1)*C:(k+1)*(tokens-1)*C])
			AddTo(img, pos)
		}
		return out, nil
	}
}

// EmbedArgs are the arguments of ClassPosEmbed's gradients (a device reads them): the number of images.
type EmbedArgs struct{ Images int }

// embedGrad is the gradient of ClassPosEmbed for input which (0 patch, 1 class, 2 position) from the
// upstream gradient g [images·(n+1), C]: the patch rows, the sum of the CLS rows, the sum over images.
func embedGrad(g *G.Node, shape tensor.Shape, images, which int) (*G.Node, error) {
	op := &fnOp{name: fmt.Sprintf("ClassPosEmbedGrad%d", which), args: EmbedArgs{Images: images}}
	op.shape = func([]tensor.Shape) (tensor.Shape, error) { return shape.Clone(), nil }
	op.do = pick(embedGradDo[float32](shape, images, which), embedGradDo[float64](shape, images, which))
	return apply(op, len(shape), g)
}

func embedGradDo[T Float](shape tensor.Shape, images, which int) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		g := slice[T](v[0])
		out, d := alloc[T](m, shape...)
		C := shape[len(shape)-1]
		tokens := len(g) / (images * C)
		for k := 0; k < images; k++ {
			img := g[k*tokens*C : (k+1)*tokens*C]
			switch which {
			case 0:
				copy(d[k*(tokens-1)*C:], img[C:])
			case 1:
				AddTo(d, img[:C])
			default:
				AddTo(d, img)
			}
		}
		return out, nil
	}
}

// NormSpec says which inputs of LayerNormOp need a gradient.
type NormSpec struct{ X, W, B bool }

// LayerNormOp is CLIP's LayerNorm over the last axis of x [R, C] with weight w and bias b [C], with
// gradients: y = (x − mean)/sqrt(var + eps)·w + b, the statistics accumulated in float64 as LayerNorm does.
func LayerNormOp(x, w, b *G.Node, eps float64, need NormSpec) (*G.Node, error) {
	op := &fnOp{name: "LayerNorm", diff: []bool{need.X, need.W, need.B}, args: NormArgs{eps}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 || len(in[1]) != 1 || !in[1].Eq(in[2]) || in[0][1] != in[1][0] {
			return nil, fmt.Errorf("ops: LayerNorm: x %v, w %v and b %v do not fit", in[0], in[1], in[2])
		}
		return in[0].Clone(), nil
	}
	op.do = pick(layerNormDo[float32](eps), layerNormDo[float64](eps))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := G.Nodes{nil, nil, nil}
		var err error
		if need.X {
			gx := &fnOp{name: "LayerNormGradX", args: op.args, exact: true, shape: sameShape, do: pick(lnGradXDo[float32](eps), lnGradXDo[float64](eps))}
			if res[0], err = apply(gx, 2, in[0], in[1], g); err != nil {
				return nil, err
			}
		}
		if need.W {
			gw := &fnOp{name: "LayerNormGradW", args: op.args, exact: true, do: pick(lnGradWDo[float32](eps), lnGradWDo[float64](eps))}
			gw.shape = func(in []tensor.Shape) (tensor.Shape, error) { return tensor.Shape{in[0][1]}, nil }
			if res[1], err = apply(gw, 1, in[0], g); err != nil {
				return nil, err
			}
		}
		if need.B {
			res[2], err = colSum(g)
		}
		return res, err
	}
	return apply(op, 2, x, w, b)
}

func layerNormDo[T Float](eps float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, w, b := slice[T](v[0]), slice[T](v[1]), slice[T](v[2])
		out, y := allocFull[T](m, shapeOf(v[0])...)
		LayerNorm(y, x, w, b, len(w), eps)
		return out, nil
	}
}

// lnStats returns the mean and 1/sqrt(var + eps) of one row, in float64.
func lnStats[T Float](x []T, eps float64) (mean, inv float64) {
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	var vs float64
	for _, v := range x {
		d := float64(v) - mean
		vs += d * d
	}
	return mean, 1 / math.Sqrt(vs/float64(len(x))+eps)
}

// lnGradXDo: with x̂ = (x − mean)·inv and h = g ⊙ w, dx = inv·(h − mean(h) − x̂·mean(h ⊙ x̂)).
func lnGradXDo[T Float](eps float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, w, g := slice[T](v[0]), slice[T](v[1]), slice[T](v[2])
		C := len(w)
		out, dx := allocFull[T](m, shapeOf(v[0])...)
		for r := 0; r < len(x)/C; r++ {
			xr, gr, dr := x[r*C:(r+1)*C], g[r*C:(r+1)*C], dx[r*C:(r+1)*C]
			mean, inv := lnStats(xr, eps)
			var mh, mhx float64
			for i := range xr {
				h := float64(gr[i]) * float64(w[i])
				mh += h
				mhx += h * (float64(xr[i]) - mean) * inv
			}
			mh, mhx = mh/float64(C), mhx/float64(C)
			for i := range xr {
				xh := (float64(xr[i]) - mean) * inv
				dr[i] = T(inv * (float64(gr[i])*float64(w[i]) - mh - xh*mhx))
			}
		}
		return out, nil
	}
}

// lnGradWDo: dw = Σ_rows g ⊙ x̂.
func lnGradWDo[T Float](eps float64) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x, g := slice[T](v[0]), slice[T](v[1])
		C := shapeOf(v[0])[1]
		acc := make([]float64, C)
		for r := 0; r < len(x)/C; r++ {
			xr, gr := x[r*C:(r+1)*C], g[r*C:(r+1)*C]
			mean, inv := lnStats(xr, eps)
			for i := range xr {
				acc[i] += float64(gr[i]) * (float64(xr[i]) - mean) * inv
			}
		}
		out, dw := alloc[T](m, C)
		for i := range dw {
			dw[i] = T(acc[i])
		}
		return out, nil
	}
}

// QuickGELUOp is CLIP's activation z·σ(1.702·z) with its gradient σ(1.702z)·(1 + 1.702·z·(1 − σ(1.702z))).
func QuickGELUOp(x *G.Node) (*G.Node, error) {
	op := &fnOp{name: "QuickGELU", diff: []bool{true}, shape: sameShape}
	op.do = pick(quickGELUDo[float32], quickGELUDo[float64])
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		back := &fnOp{name: "QuickGELUGrad", shape: sameShape, do: pick(quickGELUGradDo[float32], quickGELUGradDo[float64])}
		d, err := apply(back, in[0].Dims(), in[0], g)
		return G.Nodes{d}, err
	}
	return apply(op, x.Dims(), x)
}

func quickGELUDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	x := slice[T](v[0])
	out, y := allocFull[T](m, shapeOf(v[0])...)
	sigmoids(y, x, 1.702)
	mulBy(y, x)
	return out, nil
}

func quickGELUGradDo[T Float](m *Arena, v []G.Value) (G.Value, error) {
	x, g := slice[T](v[0]), slice[T](v[1])
	out, d := allocFull[T](m, shapeOf(v[0])...)
	sigmoids(d, x, 1.702)
	for i, z := range x {
		s := d[i]
		d[i] = g[i] * s * (1 + 1.702*z*(1-s))
	}
	return out, nil
}

// GatherRows returns the rows idx of x [R, C] as [len(idx), C] (the tower's patch rows without the CLS
// rows). need says whether x needs a gradient: the upstream rows are added back into their source rows.
func GatherRows(x *G.Node, idx []int, need bool) (*G.Node, error) {
	op := &fnOp{name: "GatherRows", diff: []bool{need}, args: RowsArgs{Index: idx}}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		if len(in[0]) != 2 {
			return nil, fmt.Errorf("ops: GatherRows: x %v is not a matrix", in[0])
		}
		for _, r := range idx {
			if r < 0 || r >= in[0][0] {
				return nil, fmt.Errorf("ops: GatherRows: row %d outside x %v", r, in[0])
			}
		}
		return tensor.Shape{len(idx), in[0][1]}, nil
	}
	op.do = pick(gatherDo[float32](idx), gatherDo[float64](idx))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		shape := in[0].Shape().Clone()
		back := &fnOp{name: "GatherRowsGrad", args: RowsArgs{Index: idx, Shape: shape.Clone()}, do: pick(scatterRowsDo[float32](idx, shape), scatterRowsDo[float64](idx, shape))}
		back.shape = func([]tensor.Shape) (tensor.Shape, error) { return shape.Clone(), nil }
		d, err := apply(back, 2, g)
		return G.Nodes{d}, err
	}
	return apply(op, 2, x)
}

func gatherDo[T Float](idx []int) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		x := slice[T](v[0])
		C := shapeOf(v[0])[1]
		out, y := allocFull[T](m, len(idx), C)
		copyRows(y, x, idx, C)
		return out, nil
	}
}

func scatterRowsDo[T Float](idx []int, shape tensor.Shape) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		g := slice[T](v[0])
		C := shape[1]
		out, d := alloc[T](m, shape...)
		for i, r := range idx {
			AddTo(d[r*C:(r+1)*C], g[i*C:(i+1)*C])
		}
		return out, nil
	}
}
