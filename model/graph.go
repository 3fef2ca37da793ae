package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/featcache"
	"github.com/flextrain/flextrain/model/ops"
)

// Mode says which rows see HR tokens: Train (rows that predict a supervised token) or Infer (the last row).
type Mode int

const (
	Train Mode = iota
	Infer
)

// Options are the per-step settings of a forward pass.
type Options struct {
	Mode      Mode
	Alpha     float64           // the blend weight of docs/DESIGN.md §9 (1 at evaluation)
	Trainable func(string) bool // which weights get a gradient; nil: none (forward only)
	Step      int               // optimizer steps taken, for the random strategy's generator
	Seed      uint64            // the random strategy's seed
	HRRows    [][]int           // when set, the rows that see HR tokens instead of Mode's (decoding checks)
	View      View              // what the decoder sees of the image: FlexAttention (default), LR only, all HR in sequence
	Dense     bool              // FlexAttention over all M HR keys, masked to the selection (the official code's cost)
	Features  *featcache.Cache  // frozen vision-tower features by image content; nil: always run the tower
	// Front, with Features, keeps the whole frozen front in the cache too (front.go): FrontFingerprint of
	// the weights. "" caches the tower's features only.
	Front string
	// Recompute keeps only the input of each decoder layer with a trainable weight and computes the layer
	// again in the backward pass (gradient checkpointing, checkpoint.go): the same numbers in less memory.
	Recompute bool
	// Products is the precision of the graph's matrix products (linear layers and their gradients):
	// ops.BF16 for mixed-precision training (float32 graphs), the default ops.Native otherwise.
	Products ops.Precision
	// Device, when set, runs the graph there (device.go): a float32 training graph whose values live in the
	// device's memory. nil: the CPU.
	Device Device
	// Arena, when set, lends the buffers of the graph's values (operations, the frozen tower) and gets them
	// all back at Close, after which no value of the graph may be read: a training loop's next step reuses
	// them. nil allocates plainly.
	Arena *ops.Arena
}

// View is what the decoder sees of an image.
type View int

const (
	ViewFlex  View = iota // LR tokens in the sequence, selected HR tokens as extra keys (docs/DESIGN.md §1)
	ViewLR                // LR tokens only: plain LLaVA
	ViewHDSeq             // LR tokens followed by all M HR tokens as ordinary sequence tokens, every layer plain
)

// ParseView reads a view name: flex, lr or hd-seq.
func ParseView(s string) (View, error) {
	switch s {
	case "", "flex":
		return ViewFlex, nil
	case "lr":
		return ViewLR, nil
	case "hd-seq":
		return ViewHDSeq, nil
	}
	return 0, fmt.Errorf("model: unknown view %q (flex, lr, hd-seq)", s)
}

// Graph is the model unrolled for one batch as a Gorgonia graph. The frozen vision tower has already run (a
// trainable one is part of the graph, visiongraph.go);
// the projector, assembly, decoder, loss and the backward pass to the trainable weights are nodes.
type Graph struct {
	cfg      Config
	view     View
	dense    bool        // FlexAttention over all M HR keys, masked to the selection
	ropeCos  [][]float64 // per sample HR RoPE tables, shared by the FlexAttention layers
	ropeSin  [][]float64
	textCos  []float64 // RoPE tables of the positions [N, dh], shared by every layer
	textSin  []float64
	g        *G.ExprGraph
	lay      layout
	rows     [][]int  // HR rows per sample
	oriSizes [][2]int // per sample (w, h)
	boxes    [][]int  // per sample, the oracle's box (Batch.Boxes)
	hd       *G.Node  // HR features [B·M, D], constants
	frontOut *G.Node  // the decoder state that keep stores in the feature cache, or nil
	lr       *G.Node  // projected LR features [K·n, D], nil without images
	logits   *G.Node  // [B·N, V], or [len(lossRows), V] in training
	lossRows []int    // in training, the rows of [B·N] with a supervised target, in order; nil otherwise
	loss     *G.Node  // scalar, Train mode only
	dloss    *G.Node  // the loss's gradient, 1, where the backward pass starts; nil without one
	params   map[string]*G.Node
	grads    map[string]*G.Node    // per trainable weight
	cells    map[int]*G.Node       // selection cells used by FlexAttention layer l
	plans    map[int]*ops.FlexPlan // per FlexAttention layer
	needs    map[*G.Node]bool      // nodes a gradient flows through
	mem      *ops.Arena            // Options.Arena
	dev      Device                // Options.Device
	scratch  *ops.Arena            // the values of a recomputed layer's own graph, given back after each
	keep     func()                // after Run: stores the front in the feature cache (keepFront); nil: nothing to store
	vm       G.VM
}

// builder unrolls the model in element type T.
type builder[T ops.Float] struct {
	*Graph
	w      *Weights
	frozen params[T] // the weights for the parts run outside the graph (the frozen tower)
	opt    Options
	// When the frozen front is cached but missed: the samples' keys, and layer n_sa−1's image attention as
	// its Select computes it.
	err        error // a value that could not go to the device (bind)
	frontKeys  []featcache.Key
	frontAttn  [][][]float64
	cacheFront bool // cachesFront's answer
}

// Build unrolls the model for a batch. The weights are bound, not copied: an optimizer that updates them in
// place is seen by the next Run of a graph built later.
func Build[P ops.Float](w *Weights, batch *Batch[P], opt Options) (*Graph, error) {
	cfg := w.Config()
	if err := batch.Validate(cfg); err != nil {
		return nil, err
	}
	if opt.Device != nil && (opt.Mode != Train || w.Dtype() != tensor.Float32) {
		return nil, errDeviceInfer
	}
	if opt.Products == ops.BF16 && w.Dtype() != tensor.Float32 {
		return nil, fmt.Errorf("model: bfloat16 products need float32 weights, not %v", w.Dtype())
	}
	_, n, _, M := cfg.Grid()
	hrSeq := 0
	if opt.View == ViewHDSeq {
		hrSeq = M
	}
	m := &Graph{cfg: cfg, g: G.NewGraph(), lay: batch.assemble(n, hrSeq), view: opt.View, params: map[string]*G.Node{},
		grads: map[string]*G.Node{}, cells: map[int]*G.Node{}, plans: map[int]*ops.FlexPlan{}, needs: map[*G.Node]bool{},
		mem: opt.Arena, dev: opt.Device}
	ops.Attach(m.g, m.mem)
	ops.AttachDevice(m.g, m.dev)
	m.rows, m.oriSizes, m.boxes = m.lay.hrRows(opt.Mode == Train), batch.OriSizes, batch.Boxes
	if opt.HRRows != nil {
		m.rows = opt.HRRows
	}
	if opt.View != ViewFlex {
		m.rows = make([][]int, m.lay.B)
	}
	m.dense = opt.Dense
	if opt.Mode == Train {
		m.lossRows = m.lay.lossRows()
	}
	var err error
	if w.Dtype() == tensor.Float32 {
		err = newBuilder[float32](m, w, opt).build(asType[float32](batch))
	} else {
		err = newBuilder[float64](m, w, opt).build(asType[float64](batch))
	}
	if err != nil {
		m.release()
		return nil, err
	}
	if err := m.plan(opt.Products, m.dloss, m.outputs()...); err != nil {
		m.release()
		return nil, err
	}
	m.vm = G.NewTapeMachine(m.g, G.WithEngine(engineOf(m.dev, m.mem)))
	return m, nil
}

// plan arranges for the graph's values but keep to go as soon as nothing reads them and, with bfloat16
// products, for the activations its backward pass reads (from from on; nil: it has none) to be held in
// bfloat16 between the passes, as mixed-precision training holds them.
func (m *Graph) plan(products ops.Precision, from *G.Node, keep ...*G.Node) error {
	if err := ops.PlanReleases(m.g, keep...); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if products != ops.BF16 || from == nil {
		return nil
	}
	if err := ops.PlanHolds(m.g, from, keep...); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	return nil
}

// engineOf is the tensor engine of a graph's values: the device's; on the CPU with an arena, whose values
// go as soon as nothing reads them, the arena's (ops.Engine); Gorgonia's own otherwise.
func engineOf(dev Device, mem *ops.Arena) tensor.Engine {
	switch {
	case dev != nil:
		return dev.Engine()
	case mem != nil:
		return ops.Engine(mem)
	}
	return G.StandardEngine{}
}

// outputs are the nodes whose values are read after the graph has run (Loss, Grads, the accessors, the
// front kept for the feature cache): they stay until the graph closes, while the other values go as soon
// as nothing reads them (ops.PlanReleases).
func (m *Graph) outputs() G.Nodes {
	out := G.Nodes{m.loss, m.logits, m.lr, m.hd, m.frontOut}
	for _, n := range m.grads {
		out = append(out, n)
	}
	for _, n := range m.cells {
		out = append(out, n)
	}
	return out
}

func newBuilder[T ops.Float](m *Graph, w *Weights, opt Options) *builder[T] {
	return &builder[T]{Graph: m, w: w, opt: opt, frozen: params[T]{w: w, products: opt.Products}}
}

func (b *builder[T]) build(batch *Batch[T]) error {
	b.cacheFront = b.cachesFront()
	h, cells, first, err := b.front(batch)
	if err != nil {
		return err
	}
	if b.view == ViewFlex {
		if b.hd, err = b.hrFeatures(batch); err != nil {
			return err
		}
	}
	for l := first; l < b.cfg.Text.NumLayers; l++ {
		layer := b.layer
		if b.recomputes(l, h) {
			layer = b.recomputed
		}
		if h, cells, err = layer(l, h, cells); err != nil {
			return fmt.Errorf("model: layer %d: %w", l, err)
		}
		if l == b.cfg.Flex.NSA-1 && b.frontKeys != nil {
			b.keepFront(h)
		}
	}
	if err = b.head(h); err != nil {
		return err
	}
	if err = b.backward(); err != nil {
		return err
	}
	return b.err
}

// param returns the node bound to a weight, creating it on first use. A weight kept in 16 bits (frozen)
// enters widened, a copy for this graph: only those that no multiply takes directly (linear does), such as
// the embeddings that Assemble gathers.
func (b *builder[T]) param(name string) (*G.Node, error) {
	if n, ok := b.params[name]; ok {
		return n, nil
	}
	t := b.w.Get(name)
	if h, ok := b.w.half[name]; ok {
		t = tensor.New(tensor.WithShape(h.shape...), tensor.WithBacking(b.frozen.vec(name)))
	}
	if t == nil {
		return nil, fmt.Errorf("model: weight %s is missing", name)
	}
	n := b.bind(name, t, true)
	b.params[name] = n
	b.needs[n] = b.opt.Trainable != nil && b.opt.Trainable(name)
	return n, nil
}

// weightAndBias are the nodes of prefix.weight and prefix.bias.
func (b *builder[T]) weightAndBias(prefix string) (w, bias *G.Node, err error) {
	if w, err = b.param(prefix + ".weight"); err == nil {
		bias, err = b.param(prefix + ".bias")
	}
	return w, bias, err
}

// constant adds a tensor without gradient.
func (b *builder[T]) constant(name string, data []T, shape ...int) *G.Node {
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	return b.bind(name, t, false)
}

// track records that n needs a gradient when any of its inputs does.
func (b *builder[T]) track(n *G.Node, err error, in ...*G.Node) (*G.Node, error) {
	if err != nil {
		return nil, err
	}
	for _, i := range in {
		b.needs[n] = b.needs[n] || b.needs[i]
	}
	return n, nil
}

// linear is x·Wᵀ for the weight called name.
func (b *builder[T]) linear(x *G.Node, name string) (*G.Node, error) {
	if h, ok := b.w.Half(name); ok {
		n, err := ops.LinearHalf(x, h, b.needs[x], b.opt.Products)
		return b.track(n, err, x)
	}
	w, err := b.param(name)
	if err != nil {
		return nil, err
	}
	n, err := ops.Linear(x, w, b.needs[x], b.needs[w], b.opt.Products)
	return b.track(n, err, x, w)
}

// affine is x·Wᵀ + bias for the torch Linear called prefix.
func (b *builder[T]) affine(x *G.Node, prefix string) (*G.Node, error) {
	y, err := b.linear(x, prefix+".weight")
	if err != nil {
		return nil, err
	}
	bias, err := b.param(prefix + ".bias")
	if err != nil {
		return nil, err
	}
	n, err := ops.AddBias(y, bias, b.needs[y], b.needs[bias])
	return b.track(n, err, y, bias)
}

// embed runs the frozen vision tower on the LR views, projects them (docs/DESIGN.md §4) and assembles the
// decoder input (§5).
func (b *builder[T]) embed(batch *Batch[T]) (*G.Node, error) {
	emb, err := b.param("model.embed_tokens.weight")
	if err != nil {
		return nil, err
	}
	var img *G.Node
	if b.lay.images > 0 {
		if img, err = b.projectLR(batch); err != nil {
			return nil, err
		}
	}
	var hr *G.Node
	if b.view == ViewHDSeq && b.lay.images > 0 {
		if hr, err = b.hrSequence(batch); err != nil {
			return nil, err
		}
	}
	n, err := ops.Assemble(emb, img, hr, b.lay.src, b.needs[emb], img != nil && b.needs[img])
	if img != nil {
		return b.track(n, err, emb, img)
	}
	return b.track(n, err, emb)
}

// projectLR runs the vision tower on every image's LR view and the projector on the result. The tower is
// part of the graph when one of its weights trains (visiongraph.go), else a constant computed in plain Go.
func (b *builder[T]) projectLR(batch *Batch[T]) (*G.Node, error) {
	x, err := b.lrVision(batch)
	if err != nil {
		return nil, err
	}
	h, err := b.affine(x, "model.mm_projector.0")
	if err != nil {
		return nil, err
	}
	a, err := ops.GELU(h)
	if h, err = b.track(a, err, h); err != nil {
		return nil, err
	}
	b.lr, err = b.affine(h, "model.mm_projector.2")
	return b.lr, err
}

// lrVision returns the tower's LR features [K·n, Cv] of the image samples, in batch order, the images
// shared among the cores.
func (b *builder[T]) lrVision(batch *Batch[T]) (*G.Node, error) {
	if b.trainsVision() || b.opt.Device != nil { // on a device, the tower runs there
		return b.visionGraph(batch)
	}
	_, n, _, _ := b.cfg.Grid()
	Cv := b.cfg.Vision.HiddenSize
	feats := ops.Buffer[T](b.mem, b.lay.images*n*Cv)
	ops.Parallel(len(b.lay.imageIdx), func(i int) {
		if k := b.lay.imageIdx[i]; k >= 0 {
			f := b.tower(featcache.ViewLR, batch.LRPixels[i], n*Cv, func(px []T) []T {
				return visionFeatures(b.mem, b.cfg, b.frozen, px, 1)
			})
			copy(feats[k*n*Cv:], f)
			ops.Recycle(b.mem, f)
		}
	})
	return b.constant("lr_vision_features", feats, b.lay.images*n, Cv), nil
}

// hrFeatures computes the HR features of every image sample as one constant [B·M, D] (zeros for text-only
// samples and for samples without HR rows, which never read them), the images shared among the cores.
func (b *builder[T]) hrFeatures(batch *Batch[T]) (*G.Node, error) {
	if b.opt.Device != nil && !b.cacheFront {
		return b.hrOnDevice(batch, false)
	}
	_, _, _, M := b.cfg.Grid()
	D := b.cfg.Text.HiddenSize
	hd := ops.Buffer[T](b.mem, b.lay.B*M*D)
	var with []int
	for i, rows := range b.rows {
		if len(rows) > 0 {
			with = append(with, i)
		}
	}
	ops.Parallel(len(with), func(j int) {
		i := with[j]
		b.hrFeaturesInto(hd[i*M*D:(i+1)*M*D], batch.HRPixels[i])
	})
	return b.constant("hd_features", hd, b.lay.B*M, D), nil
}

// hrSequence computes the HR features of every image sample, in image order, as one constant [K·M, D].
func (b *builder[T]) hrSequence(batch *Batch[T]) (*G.Node, error) {
	if b.opt.Device != nil && !b.cacheFront {
		return b.hrOnDevice(batch, true)
	}
	_, _, _, M := b.cfg.Grid()
	D := b.cfg.Text.HiddenSize
	hd := ops.Buffer[T](b.mem, b.lay.images*M*D)
	ops.Parallel(len(b.lay.imageIdx), func(i int) {
		if k := b.lay.imageIdx[i]; k >= 0 {
			b.hrFeaturesInto(hd[k*M*D:(k+1)*M*D], batch.HRPixels[i])
		}
	})
	return b.constant("hd_sequence", hd, b.lay.images*M, D), nil
}

// hrFeaturesInto writes the HR features [M, D] of an image's pixels to dst: from the feature cache when it
// keeps the frozen front, else from the tower's features (cached or not) and the projector.
func (b *builder[T]) hrFeaturesInto(dst []T, px []T) {
	if b.cacheFront {
		b.cachedHRFeatures(dst, px)
		return
	}
	t := b.hrTower(px)
	hrFeatures(b.mem, b.cfg, b.frozen, t, dst)
	ops.Recycle(b.mem, t)
}

// hrTower returns the tower's features of an image's HR crops, [Z²·n, Cv], in a buffer the caller owns.
func (b *builder[T]) hrTower(px []T) []T {
	_, n, _, _ := b.cfg.Grid()
	Z := b.cfg.Flex.Zoom
	return b.tower(featcache.ViewHR, px, Z*Z*n*b.cfg.Vision.HiddenSize, func(p []T) []T { return hrTower(b.mem, b.cfg, b.frozen, p) })
}

// tower runs the frozen vision tower on an image's pixels, or reads its features from the feature cache
// (Options.Features), which holds them by the pixels' content: the tower is frozen, so they never change.
func (b *builder[T]) tower(view string, px []T, size int, run func([]T) []T) []T {
	p := ops.Convert[T](b.mem, px)
	defer ops.Recycle(b.mem, p)
	if b.opt.Features == nil || b.trainsVision() {
		return run(p)
	}
	// A failed disk write leaves correct features and is counted in the cache's statistics.
	v, _ := featcache.GetOrCompute(b.opt.Features, featcache.PixelKey(p), view, size, func() []T { return run(p) })
	return v
}
