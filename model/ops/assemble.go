package ops

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Source says where one row of the assembled sequence comes from (docs/DESIGN.md §5).
type Source struct {
	Kind  SourceKind
	Index int // the row of the table Kind names
}

// SourceKind names the table a row comes from.
type SourceKind int

const (
	FromPad   SourceKind = iota // a zero vector
	FromToken                   // a row of the embedding table
	FromImage                   // a row of the projected LR image features
	FromHR                      // a row of the HR features (constants; the hd-seq baseline)
)

// Pad is the Source of a padding row.
var Pad = Source{Kind: FromPad}

// Assemble builds the decoder's input rows [len(src), D] from the embedding table [V, D], the projected LR
// features [K·n, D] when the batch has images (image may be nil) and, for the baseline that puts every HR
// token in the sequence, the HR features [K·M, D] (hr may be nil; it carries no gradient).
func Assemble(embed, image, hr *G.Node, src []Source, needEmbed, needImage bool) (*G.Node, error) {
	children := G.Nodes{embed}
	if image != nil {
		children = append(children, image)
	}
	if hr != nil {
		children = append(children, hr)
	}
	op := &fnOp{name: "Assemble", diff: []bool{needEmbed, needImage && image != nil, false}[:len(children)],
		args: AssembleArgs{Sources: src, Image: image != nil, HR: hr != nil}}
	tables := func(in []tensor.Shape) map[SourceKind]int {
		rows := map[SourceKind]int{FromToken: in[0][0]}
		if image != nil {
			rows[FromImage] = in[1][0]
		}
		if hr != nil {
			rows[FromHR] = in[len(in)-1][0]
		}
		return rows
	}
	op.shape = func(in []tensor.Shape) (tensor.Shape, error) {
		rows := tables(in)
		for _, s := range src {
			if s.Kind != FromPad && (s.Index < 0 || s.Index >= rows[s.Kind]) {
				return nil, fmt.Errorf("ops: Assemble: source %+v is outside the tables %v", s, in)
			}
		}
		return tensor.Shape{len(src), in[0][1]}, nil
	}
	op.do = pick(assembleDo[float32](src, image != nil), assembleDo[float64](src, image != nil))
	op.grad = func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		res := make(G.Nodes, len(in))
		var err error
		if needEmbed {
			if res[0], err = scatterRows(g, src, in[0].Shape(), false); err != nil {
				return nil, err
			}
		}
		if image != nil && needImage {
			res[1], err = scatterRows(g, src, in[1].Shape(), true)
		}
		return res, err
	}
	return apply(op, 2, children...)
}

func assembleDo[T Float](src []Source, hasImage bool) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		D := shapeOf(v[0])[1]
		table := map[SourceKind][]T{FromToken: slice[T](v[0])}
		if hasImage {
			table[FromImage] = slice[T](v[1])
		}
		table[FromHR] = slice[T](v[len(v)-1])
		out, h := alloc[T](m, len(src), D)
		for r, s := range src {
			if s.Kind != FromPad {
				copy(h[r*D:(r+1)*D], table[s.Kind][s.Index*D:(s.Index+1)*D])
			}
		}
		return out, nil
	}
}

// scatterRows adds each row of g into the table row its source names (image rows or embedding rows).
func scatterRows(g *G.Node, src []Source, table tensor.Shape, image bool) (*G.Node, error) {
	kind := FromToken
	if image {
		kind = FromImage
	}
	op := &fnOp{name: "AssembleGrad", args: AssembleArgs{Sources: src, Kind: kind, Table: table.Clone()}}
	op.shape = func([]tensor.Shape) (tensor.Shape, error) { return table.Clone(), nil }
	op.do = pick(scatterDo[float32](src, table, image), scatterDo[float64](src, table, image))
	return apply(op, 2, g)
}

func scatterDo[T Float](src []Source, table tensor.Shape, image bool) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		D := table[1]
		g := slice[T](v[0])
		out, d := alloc[T](m, table...)
		for r, s := range src {
			if (image && s.Kind == FromImage) || (!image && s.Kind == FromToken) {
				AddTo(d[s.Index*D:(s.Index+1)*D], g[r*D:(r+1)*D])
			}
		}
		return out, nil
	}
}
