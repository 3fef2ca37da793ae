package ops

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Source says where one row of the assembled sequence comes from (DESIGN.md §5).
type Source struct {
	Token int // embedding row, when Image < 0 and Token >= 0
	Image int // row of the projected LR image features, or -1
}

// Pad is the Source of a padding row: a zero vector.
var Pad = Source{Token: -1, Image: -1}

// Assemble builds the decoder's input rows [len(src), D] from the embedding table [V, D] and, when the batch
// has images, the projected LR features [K·n, D] (image may be nil).
func Assemble(embed, image *G.Node, src []Source, needEmbed, needImage bool) (*G.Node, error) {
	children := G.Nodes{embed}
	if image != nil {
		children = append(children, image)
	}
	op := &fnOp{name: "Assemble", diff: []bool{needEmbed, needImage}[:len(children)]}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		for _, s := range src {
			if s.Token >= in[0][0] || (s.Image >= 0 && (len(in) < 2 || s.Image >= in[1][0])) {
				return nil, fmt.Errorf("ops: Assemble: source %+v is outside the tables %v", s, in)
			}
		}
		return tensor.Shape{len(src), in[0][1]}, nil
	}
	op.do = pick(assembleDo[float32](src), assembleDo[float64](src))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := make(G.Nodes, len(in))
		var err error
		if needEmbed {
			if res[0], err = scatterRows(g, src, in[0].Shape(), false); err != nil {
				return nil, err
			}
		}
		if len(in) > 1 && needImage {
			res[1], err = scatterRows(g, src, in[1].Shape(), true)
		}
		return res, err
	}
	return apply(op, 2, children...)
}

func assembleDo[T Float](src []Source) doFunc {
	return func(v []G.Value) (G.Value, error) {
		D := shapeOf(v[0])[1]
		emb := slice[T](v[0])
		out, h := alloc[T](len(src), D)
		for r, s := range src {
			switch {
			case s.Image >= 0:
				copy(h[r*D:(r+1)*D], slice[T](v[1])[s.Image*D:(s.Image+1)*D])
			case s.Token >= 0:
				copy(h[r*D:(r+1)*D], emb[s.Token*D:(s.Token+1)*D])
			}
		}
		return out, nil
	}
}

// scatterRows adds each row of g into the table row its source names (image rows or embedding rows).
func scatterRows(g *G.Node, src []Source, table tensor.Shape, image bool) (*G.Node, error) {
	op := &fnOp{name: "AssembleGrad"}
	op.shape = func([]tensor.Shape) (tensor.Shape, error) { return table.Clone(), nil }
	op.do = pick(scatterDo[float32](src, table, image), scatterDo[float64](src, table, image))
	return apply(op, 2, g)
}

func scatterDo[T Float](src []Source, table tensor.Shape, image bool) doFunc {
	return func(v []G.Value) (G.Value, error) {
		D := table[1]
		g := slice[T](v[0])
		out, d := alloc[T](table...)
		for r, s := range src {
			dst := s.Token
			if image {
				dst = s.Image
			} else if s.Image >= 0 {
				dst = -1
			}
			if dst >= 0 {
				axpy(d[dst*D:(dst+1)*D], 1, g[r*D:(r+1)*D])
			}
		}
		return out, nil
	}
}
