//go:build gpu

package gpu

import (
	"fmt"
	"unsafe"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/ops"
)

// graphOp runs one kernel of a graph on the device: its inputs' buffers in, a lent output out.
type graphOp func(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error)

// graphOps are the kernels the device runs itself, by name (the Unpack kernels under "Unpack"): the whole
// of a training step with a frozen tower (the selection's choice from its map on the host).
var graphOps = map[string]graphOp{
	"Reshape":       elementwise(func(*Device, Buffer, Buffer, Buffer) error { return nil }, true),
	"ClassPosEmbed": classPosEmbed,
	"LayerNorm": norm(func(d *Device, y Buffer, b []Buffer, rows, cols int, eps float64) error {
		return d.LayerNorm(y, b[0], b[1], b[2], rows, cols, eps)
	}),
	"QuickGELU":       elementwise(func(d *Device, y, _, _ Buffer) error { return d.QuickGELU(y) }, true),
	"Add":             elementwise(func(d *Device, y, a, b Buffer) error { return d.AddTo(y, b) }, true),
	"AddBias":         elementwise(func(d *Device, y, a, b Buffer) error { return d.AddRowBias(y, b) }, true),
	"GELU":            elementwise(func(d *Device, y, a, _ Buffer) error { return d.GELU(y) }, true),
	"SwiGLU":          elementwise(func(d *Device, y, a, b Buffer) error { return d.SwiGLU(y, a, b) }, false),
	"SwiGLUGradGate":  swigluGrad(true),
	"SwiGLUGradUp":    swigluGrad(false),
	"Linear":          matmul,
	"LinearHalf":      linearHalf,
	"LinearHalfGradX": linearHalf,
	"LinearGradX":     matmul,
	"LinearGradW":     matmul,
	"RMSNorm": norm(func(d *Device, y Buffer, b []Buffer, rows, cols int, eps float64) error {
		return d.RMSNorm(y, b[0], b[1], rows, cols, eps)
	}),
	"RMSNormGradX":      normGrad((*Device).RMSNormGrad, true),
	"RMSNormGradW":      normGrad((*Device).RMSNormGrad, false),
	"Rope":              rope,
	"RopeGrad":          rope,
	"Attention":         attention,
	"AttentionGrad":     attentionGrad,
	"FlexAttention":     flexAttention,
	"FlexAttentionGrad": flexAttentionGrad,
	"Unpack":            unpack,
	"CrossEntropy":      crossEntropy,
	"CrossEntropyGrad":  crossEntropyGrad,
	"Assemble":          assemble,
	"AssembleGrad":      assembleGrad,
	"GatherRows":        gatherRows,
	"Concat":            concat,
	"Select":            selectCells,
	"GatherRowsGrad":    gatherRowsGrad,
	// the backward operations of a vision tower or a projector that trains
	"ClassPosEmbedGrad0": classPosEmbedGrad(0),
	"ClassPosEmbedGrad1": classPosEmbedGrad(1),
	"ClassPosEmbedGrad2": classPosEmbedGrad(2),
	"LayerNormGradX":     normGrad((*Device).LayerNormGrad, true),
	"LayerNormGradW":     normGrad((*Device).LayerNormGrad, false),
	"ColSum":             colSum,
	"QuickGELUGrad":      elementwise(func(d *Device, y, x, g Buffer) error { return d.QuickGELUGrad(y, x, g) }, false),
	"GELUGrad":           elementwise(func(d *Device, y, x, g Buffer) error { return d.GELUGrad(y, x, g) }, false),
}

// elementwise is an operation whose output has its first input's shape (Reshape: the shape it was built
// with): f writes y from the inputs a and b (b empty for one input); when inPlace, y starts as a copy of a.
func elementwise(f func(d *Device, y, a, b Buffer) error, inPlace bool) graphOp {
	return func(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
		bufs, err := buffers(in)
		if err != nil {
			return nil, err
		}
		bufs = append(bufs, Buffer{})
		shape := in[0].Shape()
		if to, ok := k.Args.(ops.ReshapeArgs); ok {
			shape = to.Shape
		}
		y, out, err := g.output(shape...)
		if err == nil && inPlace {
			err = g.d.copyWithin(y, bufs[0])
		}
		if err != nil {
			return nil, err
		}
		return out, f(g.d, y, bufs[0], bufs[1])
	}
}

// swigluGrad is SwiGLU's gradient of the gate or of up, over in = gate, up, g (the kernel computes both:
// the other goes to scratch, freed once the kernel is queued: the stream's order keeps it until it ran).
func swigluGrad(gate bool) graphOp {
	return func(g *Graphs, _ ops.Kernel, in []G.Value) (G.Value, error) {
		b, err := buffers(in)
		if err != nil {
			return nil, err
		}
		y, out, err := g.output(in[0].Shape()...)
		var other Buffer
		if err == nil && y.n > 0 {
			other, err = g.d.Alloc(y.n)
		}
		if err != nil {
			return nil, err
		}
		defer g.d.Free(other)
		if gate {
			return out, g.d.SwiGLUGrad(y, other, b[0], b[1], b[2])
		}
		return out, g.d.SwiGLUGrad(other, y, b[0], b[1], b[2])
	}
}

// linearHalf is x·Wᵀ (LinearHalf) or g·W (LinearHalfGradX) over in = x or g, W a frozen 16-bit weight: its
// bits stay on the device (put there at first use), so the weight takes 2 bytes a value there. In float32
// each product widens them into a temporary float32 copy, freed as soon as the product is queued: the
// numbers of its float32 value, as on the CPU (gemm.SgemmHalf). In bfloat16 (ops.BF16) the product reads
// them as they are, with x rounded to bfloat16 (the tensor cores).
func linearHalf(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.HalfArgs](k, in)
	if err != nil {
		return nil, err
	}
	w, rows := args.W, in[0].Shape()[0]
	bits, err := g.halfBits(w)
	if err != nil {
		return nil, err
	}
	x := mat{b: b[0], ld: w.Cols} // [rows, Cols]·[Rows, Cols]ᵀ
	wm, m, n, kk := mat{b: bits, ld: w.Cols, t: true}, rows, w.Rows, w.Cols
	if !args.Transposed { // [rows, Rows]·[Rows, Cols]
		x.ld, wm.t, n, kk = w.Rows, false, w.Cols, w.Rows
	}
	y, out, err := g.output(m, n)
	if err != nil {
		return nil, err
	}
	if args.Precision == ops.BF16 {
		return out, g.productBF16(x, wm, mat{b: y, ld: n}, m, n, kk, false)
	}
	if wm.b, err = g.widened(w, bits); err != nil {
		return nil, err
	}
	defer g.d.Free(wm.b)
	return out, g.d.gemm(x, wm, mat{b: y, ld: n}, m, n, kk, 1, 0, 1)
}

// halfBits are the 16-bit weight w's bits on the device, put there at its first use.
func (g *Graphs) halfBits(w half.Matrix) (Buffer, error) {
	n := w.Rows * w.Cols
	if len(w.Bits) != n || n == 0 {
		return Buffer{}, fmt.Errorf("a 16-bit weight of %d values for [%d, %d]", len(w.Bits), w.Rows, w.Cols)
	}
	key := unsafe.SliceData(w.Bits)
	bits, ok := g.halves[key]
	if !ok {
		var err error
		if bits, err = newBuffer(g.d, w.Bits); err != nil {
			return Buffer{}, err
		}
		g.halves[key] = bits
	}
	return bits, nil
}

// widened is a temporary float32 copy of the 16-bit weight w (Free it), from its bits on the device.
func (g *Graphs) widened(w half.Matrix, bits Buffer) (Buffer, error) {
	n := w.Rows * w.Cols
	wide, err := g.d.Alloc(n)
	if err != nil {
		return Buffer{}, err
	}
	if err := g.d.launch("widen16", Elementwise(n), wide.ptr, bits.ptr, int64(n), boolArg(w.Kind == half.BFloat16)); err != nil {
		g.d.Free(wide)
		return Buffer{}, err
	}
	return wide, nil
}

// matmul is op(a)·op(b) (ops.MatMulArgs) in its precision: a linear layer (x·wᵀ) and its gradients.
func matmul(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.MatMulArgs](k, in)
	if err != nil {
		return nil, err
	}
	as, bs := in[0].Shape(), in[1].Shape()
	m, kk := dims(as, args.TA)
	_, n := dims(bs, args.TB)
	y, out, err := g.output(m, n)
	if err != nil {
		return nil, err
	}
	a, bm, c := mat{b: b[0], ld: as[1], t: args.TA}, mat{b: b[1], ld: bs[1], t: args.TB}, mat{b: y, ld: n}
	if args.Precision == ops.BF16 {
		return out, g.productBF16(a, bm, c, m, n, kk, true)
	}
	return out, g.d.gemm(a, bm, c, m, n, kk, 1, 0, 1)
}

// productBF16 is c = op(a)·op(b) with both operands rounded to bfloat16 and the products summed in float32
// (ops.BF16): a, and b when roundB, are float32 values rounded into bfloat16 copies (bf16Of); otherwise b
// holds bfloat16 bits already.
func (g *Graphs) productBF16(a, b, c mat, m, n, k int, roundB bool) error {
	if m == 0 || n == 0 {
		return nil
	}
	if k == 0 { // an empty sum
		return g.d.Zero(c.b)
	}
	var done func()
	var err error
	if a.b, done, err = g.bf16Of(a.b); err != nil {
		return err
	}
	defer done()
	if roundB {
		if b.b, done, err = g.bf16Of(b.b); err != nil {
			return err
		}
		defer done()
	}
	return g.d.gemmBF16(a, b, c, m, n, k, 0)
}

// dims are the (rows, columns) of a matrix of shape s, transposed when t.
func dims(s tensor.Shape, t bool) (int, int) {
	if t {
		return s[1], s[0]
	}
	return s[0], s[1]
}

// classPosEmbed is the tower's embeddings over in = patch [images·n, C], cls [C], pos [n+1, C]: each image's
// CLS row and patch rows gathered (the assembly's gather), then pos added to every image's rows.
func classPosEmbed(g *Graphs, _ ops.Kernel, in []G.Value) (G.Value, error) {
	b, err := buffers(in)
	if err != nil {
		return nil, err
	}
	ps, ts := in[0].Shape(), in[2].Shape()
	n, C := ts[0]-1, ts[1]
	images := ps[0] / max(n, 1)
	y, out, err := g.output(images*(n+1), C)
	if err == nil {
		err = g.d.Assemble(y, b[0], b[1], Buffer{}, embedSources(images, n), C)
	}
	if err != nil {
		return nil, err
	}
	return out, g.d.AddRowBias(y, b[2])
}

// classPosEmbedGrad is the gradient of ClassPosEmbed's input which (0 patch, 1 class, 2 position) over
// in = g [images·(n+1), C], as the gradient of one of Assemble's tables (embedGradSources).
func classPosEmbedGrad(which int) graphOp {
	return func(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
		args, b, err := inputsOf[ops.EmbedArgs](k, in)
		if err != nil {
			return nil, err
		}
		s := in[0].Shape()
		rows, C := s[0], s[1]
		if args.Images < 1 || rows%args.Images != 0 || rows/args.Images < 1 {
			return nil, fmt.Errorf("%d rows for %d images", rows, args.Images)
		}
		src, kind, shape := embedGradSources(args.Images, rows/args.Images-1, C, which)
		d, out, err := g.output(shape...)
		if err != nil {
			return nil, err
		}
		return out, g.d.AssembleGrad(d, b[0], src, kind, C)
	}
}

// colSum is the sum of the rows of in[0] [rows, cols] (a bias's gradient).
func colSum(g *Graphs, _ ops.Kernel, in []G.Value) (G.Value, error) {
	b, err := buffers(in)
	if err != nil {
		return nil, err
	}
	s := in[0].Shape()
	y, out, err := g.output(s[1])
	if err != nil {
		return nil, err
	}
	return out, g.d.ColSum(y, b[0], s[0], s[1])
}

// norm is a row normalisation over in = x [rows, cols] and its parameters (RMSNorm: w; LayerNorm: w, b): f
// writes y.
func norm(f func(d *Device, y Buffer, in []Buffer, rows, cols int, eps float64) error) graphOp {
	return func(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
		args, b, err := inputsOf[ops.NormArgs](k, in)
		if err != nil {
			return nil, err
		}
		s := in[0].Shape()
		y, out, err := g.output(s...)
		if err != nil {
			return nil, err
		}
		return out, f(g.d, y, b, s[0], s[1], args.Eps)
	}
}

// normGrad is a row normalisation's gradient (grad: RMSNorm's or LayerNorm's) of x (in = x, w, g) or of its
// weight (in = x, g).
func normGrad(grad func(d *Device, dx, dw, x, w, g Buffer, rows, cols int, eps float64) error, ofX bool) graphOp {
	return func(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
		args, b, err := inputsOf[ops.NormArgs](k, in)
		if err != nil {
			return nil, err
		}
		s := in[0].Shape()
		if ofX {
			dx, out, err := g.output(s...)
			if err != nil {
				return nil, err
			}
			return out, grad(g.d, dx, Buffer{}, b[0], b[1], b[2], s[0], s[1], args.Eps)
		}
		dw, out, err := g.output(s[1])
		if err != nil {
			return nil, err
		}
		return out, grad(g.d, Buffer{}, dw, b[0], Buffer{}, b[1], s[0], s[1], args.Eps)
	}
}

// rope is Rope or its adjoint over in = x [rows, width], with the tables put on the device once per graph.
func rope(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.RopeArgs](k, in)
	if err != nil {
		return nil, err
	}
	cos, err := g.table(args.Cos)
	var sin Buffer
	if err == nil {
		sin, err = g.table(args.Sin)
	}
	s := in[0].Shape()
	var y Buffer
	var out *tensor.Dense
	if err == nil {
		y, out, err = g.output(s...)
	}
	if err != nil {
		return nil, err
	}
	return out, g.d.Rope(y, b[0], cos, sin, s[0], s[1], args.HeadDim, args.Inverse)
}

// table is a RoPE table on the device, narrowed to float32 as the CPU's kernel narrows it, uploaded once per
// graph (the layers share their tables).
func (g *Graphs) table(t []float64) (Buffer, error) {
	if len(t) == 0 {
		return Buffer{}, fmt.Errorf("an empty RoPE table")
	}
	key := unsafe.SliceData(t)
	if b, ok := g.tables[key]; ok {
		return b, nil
	}
	b, err := g.lend(len(t))
	if err == nil {
		err = g.d.Upload(b, ops.Convert[float32](nil, t))
	}
	if err != nil {
		return Buffer{}, err
	}
	g.tables[key] = b
	return b, nil
}

// attention is plain attention over in = q, k, v; the probabilities stay on the device for the backward pass.
func attention(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[*ops.AttentionArgs](k, in)
	if err != nil {
		return nil, err
	}
	o, out, err := g.output(in[0].Shape()...)
	if err != nil {
		return nil, err
	}
	p, err := g.d.Attention(o, b[0], b[1], b[2], args.Layout)
	if err != nil {
		return nil, err
	}
	if args.Layout.Frozen { // no backward pass will read it
		return out, g.d.Free(p)
	}
	g.save(&args.Saved, p, func() { g.d.Free(p) })
	return out, nil
}

// attentionGrad is plain attention's backward pass over in = q, k, v, g: dq, dk, dv packed.
func attentionGrad(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[*ops.AttentionArgs](k, in)
	if err != nil {
		return nil, err
	}
	p, ok := args.Saved.Value.(Buffer)
	if !ok {
		return nil, fmt.Errorf("the forward pass left no probabilities")
	}
	parts, out, err := g.packed(b[:3])
	if err != nil {
		return nil, err
	}
	return out, g.d.AttentionGrad(parts[0], parts[1], parts[2], b[0], b[1], b[2], b[3], p, args.Layout)
}

// packed lends one 1-D value holding a gradient of each buffer's size, one after the other, and returns its
// parts.
func (g *Graphs) packed(like []Buffer) ([]Buffer, *tensor.Dense, error) {
	n := 0
	for _, b := range like {
		n += b.n
	}
	all, out, err := g.output(n)
	if err != nil {
		return nil, nil, err
	}
	parts := make([]Buffer, len(like))
	off := 0
	for i, b := range like {
		parts[i] = Buffer{ptr: all.at(off), n: b.n}
		off += b.n
	}
	return parts, out, nil
}

// unpack is one gradient of a packed value: a view of its part (no copy).
func unpack(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.UnpackArgs](k, in)
	if err != nil {
		return nil, err
	}
	n := args.Shape.TotalSize()
	if args.Off < 0 || args.Off+n > b[0].n {
		return nil, fmt.Errorf("values [%d, %d) of %d", args.Off, args.Off+n, b[0].n)
	}
	return g.value(Buffer{ptr: b[0].at(args.Off), n: n}, args.Shape...), nil
}

// flexAttention is FlexAttention over in = q, k, v, wk, wv, hd, cells, in the plan's form; the selection cells
// are read on the host (which rows and tokens take part): the Select operation's own, or brought down.
func flexAttention(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[*ops.FlexArgs](k, in)
	if err != nil {
		return nil, err
	}
	cells, err := g.hostValues(b[6])
	if err != nil {
		return nil, err
	}
	o, out, err := g.output(in[0].Shape()...)
	if err != nil {
		return nil, err
	}
	f, err := g.d.FlexAttention(o, b[0], b[1], b[2], b[3], b[4], b[5], cells, args.Plan)
	if err != nil {
		return nil, err
	}
	g.save(&args.Saved, f, func() { f.Free(g.d) })
	return out, nil
}

// flexAttentionGrad is FlexAttention's backward pass over in = q, k, v, wk, wv, hd, cells, g: dq, dk, dv,
// dwk, dwv packed.
func flexAttentionGrad(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[*ops.FlexArgs](k, in)
	if err != nil {
		return nil, err
	}
	f, ok := args.Saved.Value.(*Flex)
	if !ok {
		return nil, fmt.Errorf("the forward pass left no state")
	}
	parts, out, err := g.packed(b[:5])
	if err != nil {
		return nil, err
	}
	return out, g.d.FlexAttentionGrad(parts[0], parts[1], parts[2], parts[3], parts[4], b[0], b[1], b[2], b[5], b[7], f)
}

// crossEntropy is the mean cross-entropy over in = logits [rows, V]: a host scalar, the one value of a
// training step that comes down.
func crossEntropy(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[*ops.XentArgs](k, in)
	if err != nil {
		return nil, err
	}
	loss, x, err := g.d.CrossEntropy(b[0], args.Targets, in[0].Shape()[1])
	if err != nil {
		return nil, err
	}
	g.save(&args.Saved, x, func() { x.Free(g.d) })
	return G.NewF32(float32(loss)), nil
}

// crossEntropyGrad is the cross-entropy's gradient over in = logits, and the upstream scalar.
func crossEntropyGrad(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[*ops.XentArgs](k, in[:1]) // in[1] is a host scalar
	if err != nil {
		return nil, err
	}
	x, ok := args.Saved.Value.(*Xent)
	if !ok {
		return nil, fmt.Errorf("the forward pass left no state")
	}
	up, err := hostScalar(in[1])
	if err != nil {
		return nil, err
	}
	d, out, err := g.output(in[0].Shape()...)
	if err != nil {
		return nil, err
	}
	return out, g.d.CrossEntropyGrad(d, b[0], x, up)
}

// hostScalar reads a scalar graph value held by the host.
func hostScalar(v G.Value) (float64, error) {
	switch x := v.(type) {
	case *G.F32:
		return float64(*x), nil
	case *G.F64:
		return float64(*x), nil
	}
	return 0, fmt.Errorf("the upstream gradient is a %T, not a host scalar", v)
}

// assemble is the decoder's input over in = embeddings, [image features], [HR features].
func assemble(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.AssembleArgs](k, in)
	if err != nil {
		return nil, err
	}
	var image, hr Buffer
	if args.Image {
		image = b[1]
	}
	if args.HR {
		hr = b[len(b)-1]
	}
	D := in[0].Shape()[1]
	y, out, err := g.output(len(args.Sources), D)
	if err != nil {
		return nil, err
	}
	return out, g.d.Assemble(y, b[0], image, hr, args.Sources, D)
}

// assembleGrad is the gradient of one of the assembly's tables over in = the rows' gradient.
func assembleGrad(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.AssembleArgs](k, in)
	if err != nil {
		return nil, err
	}
	d, out, err := g.output(args.Table...)
	if err != nil {
		return nil, err
	}
	return out, g.d.AssembleGrad(d, b[0], args.Sources, args.Kind, args.Table[1])
}

// gatherRows is rows Index of in = x [rows, C]: the assembly's gather over x as the one table.
func gatherRows(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.RowsArgs](k, in)
	if err != nil {
		return nil, err
	}
	C := in[0].Shape()[1]
	y, out, err := g.output(len(args.Index), C)
	if err != nil || len(args.Index) == 0 {
		return out, err
	}
	return out, g.d.Assemble(y, b[0], Buffer{}, Buffer{}, rowSources(args.Index), C)
}

// gatherRowsGrad adds each row of in = g back into its source row of a zero [Shape].
func gatherRowsGrad(g *Graphs, k ops.Kernel, in []G.Value) (G.Value, error) {
	args, b, err := inputsOf[ops.RowsArgs](k, in)
	if err != nil {
		return nil, err
	}
	d, out, err := g.output(args.Shape...)
	if err != nil {
		return nil, err
	}
	if len(args.Index) == 0 {
		return out, g.d.Zero(d)
	}
	return out, g.d.AssembleGrad(d, b[0], rowSources(args.Index), ops.FromToken, args.Shape[1])
}

// concat lays the inputs one after the other in one 1-D value (ops.Concat).
func concat(g *Graphs, _ ops.Kernel, in []G.Value) (G.Value, error) {
	b, err := buffers(in)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, x := range b {
		n += x.n
	}
	y, out, err := g.output(n)
	for off, i := 0, 0; err == nil && i < len(b); off, i = off+b[i].n, i+1 {
		if b[i].n > 0 {
			err = g.d.copyWithin(Buffer{ptr: y.at(off), n: b[i].n}, b[i])
		}
	}
	return out, err
}

// rowSources names rows idx of one table as the assembly's sources.
func rowSources(idx []int) []ops.Source {
	src := make([]ops.Source, len(idx))
	for i, r := range idx {
		src[i] = ops.Source{Kind: ops.FromToken, Index: r}
	}
	return src
}

// inputsOf is a kernel's arguments, of its own type A, and its inputs' device buffers; an error when the
// arguments are another kernel's or an input is not the device's.
func inputsOf[A any](k ops.Kernel, in []G.Value) (A, []Buffer, error) {
	args, ok := k.Args.(A)
	b, err := buffers(in)
	if err == nil && !ok {
		err = fmt.Errorf("arguments %T", k.Args)
	}
	return args, b, err
}
