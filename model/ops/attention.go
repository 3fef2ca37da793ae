// Plain attention: multi-head softmax attention over a right-padded batch, causal (the decoder) or
// non-causal (the vision tower), forward and backward. It is the whole of a plain decoder layer's attention
// and the first softmax of a FlexAttention layer (docs/DESIGN.md §7), whose op (flex.go) embeds its cache and
// kernels and adds the HR part of its form (flex_union.go, flex_dense.go). The backward passes of both ops
// return their gradients packed in one tensor, unpacked here.

package ops

import (
	"fmt"
	"math"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Layout describes a right-padded batch folded into rows: sample b owns rows [b·N, (b+1)·N), of which the
// first Lens[b] are real. Every attention row r sees the keys j ≤ r with j < Lens[b] (causal and padding
// mask), so padded rows see the real keys and no row is empty. With Full set every row sees all the real
// keys of its sample (the non-causal attention of the vision tower).
type Layout struct {
	B, N    int
	Lens    []int
	Heads   int
	HeadDim int
	Full    bool
	// Frozen says that no gradient will pass back through the attention (no input of it needs one): a
	// device then keeps nothing of the forward pass for a backward one.
	Frozen bool
	// Products is the run's precision of matrix products. The CPU takes the attention's in float32 either
	// way; under BF16 a GPU takes them on its tensor cores in TF32 (a 10-bit mantissa, float32 sums), finer
	// than bfloat16, as their operands are computed values that no bfloat16 copy holds.
	Products Precision
}

// keys is the number of keys row r of sample b sees.
func (l Layout) keys(b, r int) int {
	if l.Full {
		return l.Lens[b]
	}
	return min(r+1, l.Lens[b])
}

// Attention is plain multi-head attention over q, k, v [B·N, H·dh] (q and k already rotated): causal, or
// non-causal when lay.Full is set.
func Attention(q, k, v *G.Node, lay Layout) (*G.Node, error) {
	c32, c64 := &plainCache[float32]{lay: lay}, &plainCache[float64]{lay: lay}
	op := &fnOp{name: "Attention", diff: []bool{true, true, true}, shape: sameShape, do: pick(c32.forward, c64.forward),
		args: &AttentionArgs{Layout: lay}}
	op.grad = packedGrad("AttentionGrad", op.args, pick(c32.backward, c64.backward), []bool{true, true, true})
	return apply(op, 2, q, k, v)
}

// plainCache is what plain attention's forward pass keeps for its backward pass: the probabilities.
type plainCache[T Float] struct {
	mem *Arena // the op's arena: scratch and the cache live as long as the graph's values
	lay Layout
	p   []T // probabilities P [B, H, N, N], 0 beyond each row's keys
}

// attnTensors are an attention op's values of one pass, as slices.
type attnTensors[T Float] struct {
	q, k, v           []T // [B·N, H·dh]
	wk, wv, hd, cells []T // FlexAttention only: W'_K, W'_V [D, D], the HR features [B·M, D], the cells [B·N, G²]
	g                 []T // backward only: the upstream gradient [B·N, H·dh]
}

// tensorsOf reads the op's inputs: q, k, v, then FlexAttention's wk, wv, hd and cells.
func tensorsOf[T Float](in []G.Value) attnTensors[T] {
	t := attnTensors[T]{q: slice[T](in[0]), k: slice[T](in[1]), v: slice[T](in[2])}
	if len(in) > 3 {
		t.wk, t.wv, t.hd, t.cells = slice[T](in[3]), slice[T](in[4]), slice[T](in[5]), slice[T](in[6])
	}
	return t
}

// checkQKV refuses q, k, v that do not hold the layout's B·N rows of H·dh.
func checkQKV[T Float](lay Layout, t attnTensors[T]) error {
	width := lay.Heads * lay.HeadDim
	if len(t.q) != lay.B*lay.N*width || len(t.k) != len(t.q) || len(t.v) != len(t.q) {
		return fmt.Errorf("ops: attention: got %d values, layout wants %d", len(t.q), lay.B*lay.N*width)
	}
	return nil
}

// forward is the Attention op's forward pass over in = q, k, v.
func (c *plainCache[T]) forward(m *Arena, in []G.Value) (G.Value, error) {
	t := tensorsOf[T](in)
	if err := checkQKV(c.lay, t); err != nil {
		return nil, err
	}
	out, _ := c.attend(m, t, nil)
	return out, nil
}

// attend computes P·v for every sample and head into a new output, keeping P and, unless lse is nil, each
// row's log-sum-exp of its scores; it returns the output and its data.
func (c *plainCache[T]) attend(m *Arena, t attnTensors[T], lse []T) (*tensor.Dense, []T) {
	lay := c.lay
	c.mem = m
	out, o := alloc[T](m, lay.B*lay.N, lay.Heads*lay.HeadDim)
	c.p = lend[T](m, lay.B*lay.Heads*lay.N*lay.N, false) // every element written (plainForward)
	parallel(lay.B, func(b int) {
		for h := 0; h < lay.Heads; h++ {
			plainForward(lay, b, h, t.q, t.k, t.v, c.p, lse, o)
		}
	})
	return out, o
}

// headAt returns the view of a [B·N, H·dh] tensor at sample b, head h: rows of stride H·dh.
func headAt[T Float](x []T, lay Layout, b, h int) []T {
	return x[b*lay.N*lay.Heads*lay.HeadDim+h*lay.HeadDim:]
}

// plainForward computes, for sample b and head h, P = softmax(q kᵀ/√dh + mask) into p and P·v into o, and
// each row's log-sum-exp of the scores into lse unless it is nil.
func plainForward[T Float](lay Layout, b, h int, q, k, v, p, lse, o []T) {
	N, L, dh, W := lay.N, lay.Lens[b], lay.HeadDim, lay.Heads*lay.HeadDim
	P := p[(b*lay.Heads+h)*N*N:][:N*N]
	if L == 0 {
		clear(P)
		return
	}
	matmulLD(false, true, N, L, dh, T(1/math.Sqrt(float64(dh))), headAt(q, lay, b, h), W, headAt(k, lay, b, h), W, 0, P, N)
	for r := 0; r < N; r++ {
		nk := lay.keys(b, r)
		mx, sum := softmaxSum(P[r*N : r*N+nk])
		if lse != nil {
			lse[(b*lay.Heads+h)*N+r] = T(float64(mx) + math.Log(sum))
		}
		clear(P[r*N+nk : (r+1)*N])
	}
	matmulLD(false, false, N, dh, L, 1, P, N, headAt(v, lay, b, h), W, 0, headAt(o, lay, b, h), W)
}

// attnBack is one backward pass of an attention op: its inputs and upstream gradient, and the packed
// gradients it fills, [dq; dk; dv] and for FlexAttention [dW'_K; dW'_V].
type attnBack[T Float] struct {
	attnTensors[T]
	out            *tensor.Dense
	dq, dk, dv, dw []T
}

// backward is the Attention op's backward pass: [dq; dk; dv] from in = q, k, v, g.
func (c *plainCache[T]) backward(m *Arena, in []G.Value) (G.Value, error) {
	t, err := c.backPass(m, in, 0)
	if err != nil {
		return nil, err
	}
	parallel(c.lay.B, func(b int) { // samples own disjoint rows of dq, dk, dv
		for h := 0; h < c.lay.Heads; h++ {
			w := c.rowWeights()
			c.headBackward(m, t, b, h, w, nil)
			Recycle(m, w)
		}
	})
	return t.out, nil
}

// backPass reads a backward pass's values (the op's inputs, the upstream gradient last) and allocates its
// packed gradients: [dq; dk; dv] and extra values for dw.
func (c *plainCache[T]) backPass(m *Arena, in []G.Value, extra int) (*attnBack[T], error) {
	t := &attnBack[T]{attnTensors: tensorsOf[T](in[:len(in)-1])}
	t.g = slice[T](in[len(in)-1])
	n := len(t.q)
	var packed []T
	t.out, packed = alloc[T](m, 3*n+extra)
	t.dq, t.dk, t.dv, t.dw = packed[:n], packed[n:2*n], packed[2*n:3*n], packed[3*n:]
	if c.p == nil {
		return nil, fmt.Errorf("ops: attention backward ran before its forward pass")
	}
	return t, nil
}

// rowWeights returns c_r = 1 for every row of a sample: the weight of P·v in plain attention's output,
// which FlexAttention's forms then adjust (hrRows.plainTerms).
func (c *plainCache[T]) rowWeights() []float64 {
	w := get[float64](c.mem, c.lay.N, false)
	for r := range w {
		w[r] = 1
	}
	return w
}

// headBackward backpropagates c_r·P·v of sample b, head h (c_r = w[r]) into q, k and v, each row's softmax
// backward shifted by shift_r (none when shift is nil).
func (c *plainCache[T]) headBackward(m *Arena, t *attnBack[T], b, h int, w, shift []float64) {
	lay := c.lay
	N, L, dh, W := lay.N, lay.Lens[b], lay.HeadDim, lay.Heads*lay.HeadDim
	if L == 0 {
		return
	}
	P := c.p[(b*lay.Heads+h)*N*N:][:N*N]
	gO := get[T](m, N*dh, false) // every element written below, and dS by its product (β = 0)
	weightRows(gO, headAt(t.g, lay, b, h), w, dh, W)
	dS := get[T](m, N*L, false)
	defer Recycle(m, gO, dS)
	matmulLD(false, true, N, L, dh, 1, gO, dh, headAt(t.v, lay, b, h), W, 0, dS, L)
	matmulLD(true, false, L, dh, N, 1, P, N, gO, dh, 1, headAt(t.dv, lay, b, h), W)
	for r := 0; r < N; r++ {
		softmaxBackward(P[r*N:r*N+L], dS[r*L:(r+1)*L], shiftAt(shift, r))
	}
	scale := T(1 / math.Sqrt(float64(dh)))
	matmulLD(false, false, N, dh, L, scale, dS, L, headAt(t.k, lay, b, h), W, 1, headAt(t.dq, lay, b, h), W)
	matmulLD(true, false, L, dh, N, scale, dS, L, headAt(t.q, lay, b, h), W, 1, headAt(t.dk, lay, b, h), W)
}

// weightRows sets dst [N, dh] to w_r times row r of the head view g (rows of stride W).
func weightRows[T Float](dst, g []T, w []float64, dh, W int) {
	for r := range w {
		for d := 0; d < dh; d++ {
			dst[r*dh+d] = T(w[r]) * g[r*W+d]
		}
	}
}

// shiftAt is row r's softmax shift, 0 when there are none.
func shiftAt(shift []float64, r int) float64 {
	if shift == nil {
		return 0
	}
	return shift[r]
}

// packedGrad is the symbolic backward of an attention op: one op (do) over the inputs and the upstream
// gradient computes the gradients of the first len(want) inputs packed in one tensor, and they are unpacked,
// nil where want is false and for the inputs beyond. args are the forward operation's.
func packedGrad(name string, args any, do doFunc, want []bool) func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
	return func(in G.Nodes, _, g *G.Node) (G.Nodes, error) {
		sizes := make([]tensor.Shape, len(want))
		for i := range sizes {
			sizes[i] = in[i].Shape()
		}
		back := &fnOp{name: name, args: args, shape: packedShape(sizes), do: do}
		packed, err := apply(back, 1, append(in[:len(in):len(in)], g)...)
		if err != nil {
			return nil, err
		}
		grads, err := unpackAll(packed, sizes, want)
		if err != nil {
			return nil, err
		}
		return append(grads, make(G.Nodes, len(in)-len(want))...), nil
	}
}

// packedShape is the shape of a 1-D tensor holding several gradients one after the other.
func packedShape(sizes []tensor.Shape) func([]tensor.Shape) (tensor.Shape, error) {
	return func([]tensor.Shape) (tensor.Shape, error) {
		n := 0
		for _, s := range sizes {
			n += s.TotalSize()
		}
		return tensor.Shape{n}, nil
	}
}

// unpackAll splits a packed gradient into one node per input, nil where want is false.
func unpackAll(packed *G.Node, sizes []tensor.Shape, want []bool) (G.Nodes, error) {
	res := make(G.Nodes, len(sizes))
	off := 0
	for i, s := range sizes {
		if want[i] {
			n, err := unpack(packed, off, s)
			if err != nil {
				return nil, err
			}
			res[i] = n
		}
		off += s.TotalSize()
	}
	return res, nil
}

// unpack copies the elements [off, off+|shape|) of a packed 1-D tensor into a tensor of the given shape.
func unpack(packed *G.Node, off int, shape tensor.Shape) (*G.Node, error) {
	op := &fnOp{name: fmt.Sprintf("Unpack%d", off), args: UnpackArgs{off, shape.Clone()}, view: true}
	op.shape = func([]tensor.Shape) (tensor.Shape, error) { return shape.Clone(), nil }
	op.do = pick(unpackDo[float32](off, shape), unpackDo[float64](off, shape))
	return apply(op, len(shape), packed)
}

// unpackDo is unpack's forward pass in T.
func unpackDo[T Float](off int, shape tensor.Shape) doFunc {
	return func(m *Arena, v []G.Value) (G.Value, error) {
		out, y := alloc[T](m, shape...)
		copy(y, slice[T](v[0])[off:])
		return out, nil
	}
}
