package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"

	"github.com/flextrain/flextrain/model/ops"
)

// The CLIP tower (docs/DESIGN.md §3) as graph nodes, for runs that train it (a base model trained from scratch):
// the LR path is built here instead of running vision.go's plain forward, so that gradients reach the
// tower's weights. HR features stay constants of the plain path: FlexAttention training freezes the tower.

// trainsVision reports whether any weight of the vision tower needs a gradient.
func (b *builder[T]) trainsVision() bool {
	if b.opt.Trainable == nil || b.opt.Mode != Train {
		return false
	}
	for _, name := range b.w.Names() {
		if isVision(name) && b.opt.Trainable(name) {
			return true
		}
	}
	return false
}

// visionGraph returns hs[select_layer] without the CLS rows, [K·n, Cv], for the K image samples' LR views.
func (b *builder[T]) visionGraph(batch *Batch[T]) (*G.Node, error) {
	vc := b.cfg.Vision
	_, n, _, _ := b.cfg.Grid()
	pp := 3 * vc.PatchSize * vc.PatchSize
	patches := ops.Buffer[T](b.mem, b.lay.images*n*pp)
	for i, k := range b.lay.imageIdx {
		if k >= 0 {
			px := ops.Convert[T](b.mem, batch.LRPixels[i])
			lrPatches(patches[k*n*pp:], b.cfg, px)
			ops.Recycle(b.mem, px)
		}
	}
	return b.towerGraph(patches, b.lay.images)
}

// towerGraph runs the tower in the graph on the patches [images·n, 3·P·P] of images S×S views (LR views, or
// HR crops) and returns hs[select_layer] without the CLS rows, [images·n, Cv]. On a device the frozen tower
// runs a part at a time (towerPart): its activations go back layer by layer.
func (b *builder[T]) towerGraph(patches []T, images int) (*G.Node, error) {
	vc := b.cfg.Vision
	_, n, _, _ := b.cfg.Grid()
	x := b.constant("patches", patches, images*n, 3*vc.PatchSize*vc.PatchSize)
	part := func(name string, f func(*builder[T], *G.Node) (*G.Node, error)) error {
		var err error
		if b.opt.Device != nil && !b.trainsVision() {
			x, err = b.towerPart(name, x, images*(n+1), f)
		} else {
			x, err = f(b, x)
		}
		return err
	}
	err := part("TowerEmbed", func(s *builder[T], x *G.Node) (*G.Node, error) {
		x, err := s.visionEmbed(x, images)
		if err != nil {
			return nil, err
		}
		return s.layerNorm(x, VisionPrefix+"pre_layrnorm")
	})
	for l := 0; l < b.cfg.VisionLayersRun() && err == nil; l++ {
		err = part(fmt.Sprintf("TowerLayer%d", l), func(s *builder[T], x *G.Node) (*G.Node, error) {
			y, err := s.visionLayer(x, fmt.Sprintf("%sencoder.layers.%d.", VisionPrefix, l), images)
			if err != nil {
				return nil, fmt.Errorf("model: vision layer %d: %w", l, err)
			}
			return y, nil
		})
	}
	if err != nil {
		return nil, err
	}
	rows := make([]int, 0, images*n)
	for k := 0; k < images; k++ {
		for i := 1; i <= n; i++ {
			rows = append(rows, k*(n+1)+i)
		}
	}
	return b.track2(ops.GatherRows(x, rows, b.needs[x]))(x)
}

// visionEmbed is the patch embedding (a Linear over the patches x [images·n, 3·P·P]) with class and
// position embeddings: [images·(n+1), Cv].
func (b *builder[T]) visionEmbed(x *G.Node, images int) (*G.Node, error) {
	vc := b.cfg.Vision
	pp := 3 * vc.PatchSize * vc.PatchSize
	w, err := b.param(VisionPrefix + "embeddings.patch_embedding.weight")
	if err != nil {
		return nil, err
	}
	wm, err := b.track2(ops.Reshape(w, vc.HiddenSize, pp))(w)
	if err != nil {
		return nil, err
	}
	pe, err := b.track2(ops.Linear(x, wm, false, b.needs[wm], b.opt.Products))(wm)
	if err != nil {
		return nil, err
	}
	cls, err := b.param(VisionPrefix + "embeddings.class_embedding")
	if err != nil {
		return nil, err
	}
	pos, err := b.param(VisionPrefix + "embeddings.position_embedding.weight")
	if err != nil {
		return nil, err
	}
	need := ops.EmbedSpec{Patch: b.needs[pe], Class: b.needs[cls], Pos: b.needs[pos]}
	return b.track2(ops.ClassPosEmbed(pe, cls, pos, images, need))(pe, cls, pos)
}

// layerNorm is the CLIP LayerNorm called prefix.
func (b *builder[T]) layerNorm(x *G.Node, prefix string) (*G.Node, error) {
	w, bias, err := b.weightAndBias(prefix)
	if err != nil {
		return nil, err
	}
	need := ops.NormSpec{X: b.needs[x], W: b.needs[w], B: b.needs[bias]}
	return b.track2(ops.LayerNormOp(x, w, bias, b.cfg.Vision.LayerNormEps, need))(x, w, bias)
}

// visionLayer is one pre-norm CLIP encoder layer: x + attn(ln1(x)), then + fc2(quick_gelu(fc1(ln2(x)))).
func (b *builder[T]) visionLayer(x *G.Node, p string, images int) (*G.Node, error) {
	y, err := b.layerNorm(x, p+"layer_norm1")
	if err != nil {
		return nil, err
	}
	var qkv [3]*G.Node
	for i, proj := range []string{"q_proj", "k_proj", "v_proj"} {
		if qkv[i], err = b.affine(y, p+"self_attn."+proj); err != nil {
			return nil, err
		}
	}
	lay := b.visionLayout(images)
	lay.Frozen = !b.needs[qkv[0]] && !b.needs[qkv[1]] && !b.needs[qkv[2]]
	o, err := b.track2(ops.Attention(qkv[0], qkv[1], qkv[2], lay))(qkv[:]...)
	if err != nil {
		return nil, err
	}
	if x, err = b.addAffine(x, o, p+"self_attn.out_proj"); err != nil {
		return nil, err
	}
	if y, err = b.layerNorm(x, p+"layer_norm2"); err != nil {
		return nil, err
	}
	h, err := b.affine(y, p+"mlp.fc1")
	if err != nil {
		return nil, err
	}
	if h, err = b.track2(ops.QuickGELUOp(h))(h); err != nil {
		return nil, err
	}
	return b.addAffine(x, h, p+"mlp.fc2")
}

// addAffine is x + (h·Wᵀ + bias) for the torch Linear called prefix.
func (b *builder[T]) addAffine(x, h *G.Node, prefix string) (*G.Node, error) {
	y, err := b.affine(h, prefix)
	if err != nil {
		return nil, err
	}
	return b.track2(ops.Add(x, y))(x, y)
}

// visionLayout is the image samples as the attention op sees them: K sequences of n+1 tokens, non-causal.
func (b *builder[T]) visionLayout(images int) ops.Layout {
	_, n, _, _ := b.cfg.Grid()
	lens := make([]int, images)
	for i := range lens {
		lens[i] = n + 1
	}
	vc := b.cfg.Vision
	return ops.Layout{B: images, N: n + 1, Lens: lens, Heads: vc.NumHeads, HeadDim: vc.HiddenSize / vc.NumHeads, Full: true,
		Products: b.opt.Products}
}
