package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/llava"
	"github.com/flextrain/flextrain/model/ops"
)

// TagHeadName names the tag pretraining's classifier [ΣV_h, Cv] among a graph's parameters and gradients.
const TagHeadName = "vision_tagger.weight"

// Tagging is the vision tower's tag pretraining objective for a batch of images. The tower's LR features
// (hs[select_layer] without CLS, as the projector sees them) are pooled over each image's n tokens by their
// maximum and by their mean (ops.Pools), and each pooling goes through its own linear classifier per tag
// key. Head [2·ΣSizes, Cv] holds the maximum's classifiers side by side, then the mean's; the loss is the
// sum over both poolings and all keys of the mean cross-entropy over the images that carry the key. It
// gives the from-scratch tower of a small base model what LLaVA's pretrained CLIP brings: tokens that show
// what the image holds, learnt from labels rather than from the language model's loss alone, under which a
// shape or a letter covering a few of the n tokens stays at chance for thousands of steps.
type Tagging struct {
	Head    *tensor.Dense // [2·ΣSizes, Cv], the weight's element type
	Sizes   []int         // classes per key, in Head's row order
	Targets [][]int       // per key, per image: its class, or llava.IgnoreIndex
}

// TagLogits splits the tagger's logits [2K, 2·ΣSizes] (Graph.Logits) into the maximum's and the mean's
// scores of image k for key h: the rows and columns of the two diagonal blocks.
func TagLogits[T ops.Float](logits []T, K int, sizes []int, pool, k, h int) []T {
	total := 0
	for _, v := range sizes {
		total += v
	}
	off := pool * total
	for _, v := range sizes[:h] {
		off += v
	}
	row := (pool*K + k) * 2 * total
	return logits[row+off : row+off+sizes[h]]
}

// BuildTagger unrolls the tag objective for the images of batch (every sample must have one; its ids are
// not read). Gradients reach the weights opt.Trainable selects and the head (TagHeadName).
func BuildTagger[P ops.Float](w *Weights, batch *Batch[P], t Tagging, opt Options) (*Graph, error) {
	cfg := w.Config()
	total := 0
	for _, v := range t.Sizes {
		total += v
	}
	if t.Head == nil || t.Head.Dtype() != w.Dtype() || !t.Head.Shape().Eq(tensor.Shape{2 * total, cfg.Vision.HiddenSize}) {
		return nil, fmt.Errorf("model: tagger: head must be %v [2·%d, %d]", w.Dtype(), total, cfg.Vision.HiddenSize)
	}
	imgs := &Batch[P]{LRPixels: batch.LRPixels, HRPixels: batch.HRPixels, OriSizes: batch.OriSizes}
	for range batch.LRPixels {
		imgs.InputIDs = append(imgs.InputIDs, []int{llava.ImageTokenID})
		imgs.AttentionMask, imgs.Labels = append(imgs.AttentionMask, []int{1}), append(imgs.Labels, []int{llava.IgnoreIndex})
	}
	if err := imgs.Validate(cfg); err != nil {
		return nil, err
	}
	_, n, _, _ := cfg.Grid()
	opt.Mode = Train
	m := &Graph{cfg: cfg, g: G.NewGraph(), lay: imgs.assemble(n, 0), view: ViewLR, params: map[string]*G.Node{},
		grads: map[string]*G.Node{}, needs: map[*G.Node]bool{}, mem: opt.Arena}
	ops.Attach(m.g, m.mem)
	m.rows = make([][]int, m.lay.B)
	var err error
	if w.Dtype() == tensor.Float32 {
		err = newBuilder[float32](m, w, opt).tagger(asType[float32](imgs), t)
	} else {
		err = newBuilder[float64](m, w, opt).tagger(asType[float64](imgs), t)
	}
	if err != nil {
		m.release()
		return nil, err
	}
	m.vm = G.NewTapeMachine(m.g)
	return m, nil
}

func (b *builder[T]) tagger(batch *Batch[T], t Tagging) error {
	if !b.trainsVision() {
		return fmt.Errorf("model: tagger: no weight of the vision tower is trainable")
	}
	x, err := b.visionGraph(batch)
	if err != nil {
		return err
	}
	_, n, _, _ := b.cfg.Grid()
	pooled, err := b.track2(ops.Pools(x, n, b.needs[x]))(x)
	if err != nil {
		return err
	}
	head := G.NodeFromAny(b.g, t.Head, G.WithName(TagHeadName))
	b.params[TagHeadName], b.needs[head] = head, true
	logits, err := b.track2(ops.Linear(pooled, head, b.needs[pooled], true, ops.Native))(pooled, head)
	if err != nil {
		return err
	}
	b.logits = logits
	targets, sizes := bothPools(t.Targets, t.Sizes, b.lay.B)
	if b.loss, err = ops.HeadsCrossEntropy(logits, targets, sizes); err != nil {
		return err
	}
	return b.backward()
}

// bothPools lays out the targets of the two poolings' heads over the stacked rows [maxima; means] of K
// images: the maximum's heads score the first K rows, the mean's the last K.
func bothPools(targets [][]int, sizes []int, K int) ([][]int, []int) {
	out := make([][]int, 0, 2*len(targets))
	for pool := range 2 {
		for _, ts := range targets {
			col := make([]int, 2*K)
			for i := range col {
				col[i] = llava.IgnoreIndex
			}
			copy(col[pool*K:], ts)
			out = append(out, col)
		}
	}
	return out, append(append([]int(nil), sizes...), sizes...)
}
