package model

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	G "gorgonia.org/gorgonia"

	"github.com/flextrain/flextrain/model/featcache"
	"github.com/flextrain/flextrain/model/ops"
)

// The frozen front of the model is everything before the first FlexAttention layer: the vision tower, the
// projector, the embeddings and decoder layers 0…n_sa−1. When none of its weights trains, what it computes
// for a sample never changes: the HR features after the projector, the decoder state leaving layer n_sa−1
// and that layer's image attention, from which layer n_sa's selection is chosen. The feature cache keeps
// them, so that epochs after the first run none of the front, and the step is the trainable layers' alone.

// Feature cache views of the frozen front (the tower's own are featcache.ViewLR and ViewHR).
const (
	viewHD        = "hd"         // an image's HR features after the projector [M, D]
	viewFront     = "front"      // a sample's decoder state after layer n_sa−1, its real rows [L, D]
	viewFrontAttn = "front_attn" // that layer's image attention of the sample's HR rows [R, n], float64
)

// FrontFingerprint identifies the frozen front's weights beyond the tower's (which the feature cache's own
// fingerprint, VisionFingerprint, covers), the model configuration and the products' precision
// (Options.Products); Options.Front takes it. It is "" when a weight of the front trains: then the front is
// not cached.
func FrontFingerprint(w *Weights, trainable func(string) bool, products ops.Precision) string {
	cfg := w.Config()
	if frontTrains(cfg, w.Names(), trainable) {
		return ""
	}
	return w.fingerprint(func(name string) bool { return inFront(cfg, name) && !isVision(name) }, products)
}

// VisionFingerprint identifies the vision tower: its weights in name order, the model configuration and the
// products' precision. It is the feature cache's fingerprint for the tower's features.
func VisionFingerprint(w *Weights, products ops.Precision) string {
	return w.fingerprint(isVision, products)
}

// fingerprint hashes the model configuration, the element type, the products' precision unless native
// and, in name order, the names and data of the weights keep picks.
func (w *Weights) fingerprint(keep func(name string) bool, products ops.Precision) string {
	f := featcache.NewFingerprinter()
	f.Add(fmt.Appendf(nil, "%+v %s", w.Config(), w.Dtype()))
	if products != ops.Native {
		f.Add([]byte(products.String()))
	}
	for _, name := range w.Names() {
		if keep(name) {
			f.Add([]byte(name))
			f.Add(w.Tensor(name).Data) // one weight in memory at a time
		}
	}
	return f.Sum()
}

// isVision reports whether the weight called name belongs to the vision tower.
func isVision(name string) bool { return strings.HasPrefix(name, VisionPrefix) }

// frontTrains reports whether trainable (nil: nothing trains) picks a weight of the front among names.
func frontTrains(cfg Config, names []string, trainable func(string) bool) bool {
	return trainable != nil && slices.ContainsFunc(names, func(name string) bool { return inFront(cfg, name) && trainable(name) })
}

// inFront reports whether the weight called name belongs to the front.
func inFront(cfg Config, name string) bool {
	var l int
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &l); err == nil {
		return l < cfg.Flex.NSA
	}
	return isVision(name) || strings.HasPrefix(name, "model.mm_projector.") ||
		strings.HasPrefix(name, "model.embed_tokens.")
}

// cachesFront reports whether this graph keeps the frozen front in the feature cache: Options.Front is set
// with a cache, the sequence is the plain one (not hd-seq), there is a layer after the front, and no weight
// of the front trains (a cached front would leave those weights without their gradient). build asks once,
// before anything runs on several cores, and keeps the answer in cacheFront.
func (b *builder[T]) cachesFront() bool {
	if b.opt.Front == "" || b.opt.Features == nil || b.view == ViewHDSeq || b.cfg.Flex.NSA >= b.cfg.Text.NumLayers {
		return false
	}
	return b.opt.Mode != Train || !frontTrains(b.cfg, b.w.Names(), b.opt.Trainable)
}

// sampleKeys names each sample's front by its content: its real token ids, its LR pixels and its HR rows,
// under the front's fingerprint.
func (b *builder[T]) sampleKeys(batch *Batch[T]) []featcache.Key {
	keys := make([]featcache.Key, batch.Len())
	for i, ids := range batch.InputIDs {
		var tokens, rows []byte
		for t, id := range ids {
			if batch.AttentionMask[i][t] != 0 {
				tokens = binary.LittleEndian.AppendUint64(tokens, uint64(id))
			}
		}
		for _, r := range b.rows[i] {
			rows = binary.LittleEndian.AppendUint64(rows, uint64(r))
		}
		px := ops.Convert[T](b.mem, batch.LRPixels[i])
		pk := featcache.PixelKey(px)
		ops.Recycle(b.mem, px)
		keys[i] = featcache.KeyOf([]byte(b.opt.Front), []byte(viewFront), tokens, rows, pk[:])
	}
	return keys
}

// cachedFront returns the decoder state entering layer n_sa [B·N, D] and the cells layer n_sa attends to,
// when the feature cache holds every sample's front; ok is false otherwise.
func (b *builder[T]) cachedFront(keys []featcache.Key) (h, cells *G.Node, ok bool, err error) {
	D := b.cfg.Text.HiddenSize
	state := ops.Buffer[T](b.mem, b.lay.B*b.lay.N*D) // padding rows stay zero
	att := make([][][]float64, b.lay.B)
	_, n, _, _ := b.cfg.Grid()
	for i, k := range keys {
		if !featcache.GetInto(b.opt.Features, k, viewFront, state[i*b.lay.N*D:][:b.lay.lens[i]*D]) {
			return nil, nil, false, nil
		}
		a, ok := featcache.Get[float64](b.opt.Features, k, viewFrontAttn)
		if !ok || len(a) != len(b.rows[i])*n {
			return nil, nil, false, nil
		}
		for r := range b.rows[i] {
			att[i] = append(att[i], a[r*n:(r+1)*n])
		}
	}
	h = b.constant("front_state", state, b.lay.B*b.lay.N, D)
	if b.view != ViewFlex {
		return h, nil, true, nil
	}
	nc := b.cfg.Flex.SelectGrid * b.cfg.Flex.SelectGrid
	sel := ops.Buffer[T](b.mem, b.lay.B*b.lay.N*nc)
	if err := ops.SelectFrom(b.selectPlan(b.cfg.Flex.NSA-1), att, sel); err != nil {
		return nil, nil, false, err
	}
	return h, b.constant("front_cells", sel, b.lay.B*b.lay.N, nc), true, nil
}

// front returns the decoder state entering the first layer the graph runs, that layer and the cells it
// attends to: layer n_sa's, when the feature cache holds every sample's front; else the embedded batch and
// layer 0 (and, when the front is cached, the keys and attention that keepFront stores).
func (b *builder[T]) front(batch *Batch[T]) (h, cells *G.Node, first int, err error) {
	if b.cacheFront {
		keys := b.sampleKeys(batch)
		if h, cells, ok, err := b.cachedFront(keys); ok || err != nil {
			return h, cells, b.cfg.Flex.NSA, err
		}
		b.frontKeys, b.frontAttn = keys, make([][][]float64, b.lay.B)
	}
	h, err = b.embed(batch)
	return h, nil, 0, err
}

// cachedHRFeatures writes the HR features [M, D] of an image's pixels to dst from the feature cache, or runs
// the tower and the projector and stores their result there.
func (b *builder[T]) cachedHRFeatures(dst []T, px []T) {
	p := ops.Convert[T](b.mem, px)
	defer ops.Recycle(b.mem, p)
	pk := featcache.PixelKey(p)
	k := featcache.KeyOf([]byte(b.opt.Front), []byte(viewHD), pk[:])
	if featcache.GetInto(b.opt.Features, k, viewHD, dst) {
		return
	}
	t := hrTower(b.mem, b.cfg, b.frozen, p)
	hrFeatures(b.mem, b.cfg, b.frozen, t, dst)
	ops.Recycle(b.mem, t)
	// A failed disk write leaves correct features and is counted in the cache's statistics.
	featcache.Put(b.opt.Features, k, viewHD, dst)
}

// keepFront arranges for the Run of the graph to store each sample's front under b.frontKeys: the decoder
// state h leaving layer n_sa−1 and that layer's image attention (which its Select wrote to b.frontAttn).
func (b *builder[T]) keepFront(h *G.Node) {
	D := b.cfg.Text.HiddenSize
	keys, att := b.frontKeys, b.frontAttn
	b.frontOut = h
	b.keep = func() {
		v, err := b.host(h.Value())
		if err != nil {
			return // a cache: a state that cannot come down from the device is computed again next time
		}
		state := v.Data().([]T)
		for i, k := range keys {
			var flat []float64
			for _, a := range att[i] {
				flat = append(flat, a...)
			}
			// A failed disk write loses nothing but the saving; the cache's statistics count it.
			featcache.Put(b.opt.Features, k, viewFront, state[i*b.lay.N*D:][:b.lay.lens[i]*D])
			featcache.Put(b.opt.Features, k, viewFrontAttn, flat)
		}
	}
}
