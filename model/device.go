package model

import (
	"errors"
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// Device is where a graph's values live when they are not in host memory: a GPU (package gpu). The graph
// is the one the CPU runs; the device runs its operations (ops.Device), holds the weights across graphs and
// lends every other value for one graph. The batch's values go up; what comes down is the loss and the
// selection's maps and cells (a few values per HR row).
type Device interface {
	ops.Device
	// Weight returns the device's copy of weight name, made from t the first time and kept across graphs (an
	// optimizer on the device updates it in place).
	Weight(name string, t *tensor.Dense) (G.Value, error)
	// Upload returns a device copy of t, freed by Release.
	Upload(t *tensor.Dense) (G.Value, error)
	// Download returns a host copy of a device value.
	Download(v G.Value) (*tensor.Dense, error)
	// Engine is the tensor engine of the device's values: Gorgonia's own operations reach the device through it.
	Engine() tensor.Engine
	// Release frees every value lent since the last Release (the graph's values and what its operations saved).
	Release()
	// Mark and ReleaseAfter free early what a part of a graph lent: ReleaseAfter(Mark(), keep...) frees
	// every value lent since the Mark but keep, which stay lent until Release. A layer of the frozen tower,
	// or a recomputed layer, runs so, as a graph of its own within the step's.
	Mark() int
	ReleaseAfter(mark int, keep ...G.Value)
}

// errDeviceInfer refuses an inference graph on a device: decoding reads the graph's values on the host.
var errDeviceInfer = errors.New("model: a graph on a device trains only, in float32; inference runs on the CPU")

// bind adds t to the graph under name: as it is, or as the device's copy (a weight is kept on the device
// across graphs, any other value is lent for this graph). A failed copy is kept in b.err.
func (b *builder[T]) bind(name string, t *tensor.Dense, weight bool) *G.Node {
	var v G.Value = t
	if d := b.opt.Device; d != nil {
		var err error
		if weight {
			v, err = d.Weight(name, t)
		} else {
			v, err = d.Upload(t)
		}
		if err != nil {
			b.err = errors.Join(b.err, fmt.Errorf("model: %s to the device: %w", name, err))
			return G.NodeFromAny(b.g, t, G.WithName(name)) // the graph is refused before it runs
		}
	}
	return G.NodeFromAny(b.g, v, G.WithName(name))
}

// host returns a graph value in host memory: itself, or a copy from the device.
func (m *Graph) host(v G.Value) (G.Value, error) {
	if m.dev == nil {
		return v, nil
	}
	if _, ok := v.(tensor.Tensor); !ok { // a scalar: the device hands those to the host
		return v, nil
	}
	return m.dev.Download(v)
}

// hostDense is host for the tensor accessors: a device value that cannot come down is reported as nil.
func (m *Graph) hostDense(v G.Value) *tensor.Dense {
	h, err := m.host(v)
	if err != nil {
		return nil
	}
	return h.(*tensor.Dense)
}

// hrOnDevice is the HR features for a graph on a device, [B·M, D] (hrFeatures: sample i's block from its
// image when it has HR rows, zeros otherwise) or, for seq, [K·M, D] in image order (hrSequence). The
// frozen tower and the projector run in the graph, on the device with the device's copy of their weights
// (the projector's, which the optimizer updates there when it trains), without gradient, as the CPU
// computes them: only the crops' pixels go up.
func (b *builder[T]) hrOnDevice(batch *Batch[T], seq bool) (*G.Node, error) {
	_, n, _, M := b.cfg.Grid()
	Z := b.cfg.Flex.Zoom
	rows := b.lay.B // output blocks of M rows
	if seq {
		rows = b.lay.images
	}
	var from, block []int // the samples whose image goes in, and the output block of each
	for i := range b.lay.B {
		switch {
		case seq && b.lay.imageIdx[i] >= 0:
			from, block = append(from, i), append(block, b.lay.imageIdx[i])
		case !seq && len(b.rows[i]) > 0:
			from, block = append(from, i), append(block, i)
		}
	}
	per := Z * Z * n // tower rows of one image
	if len(from) == 0 {
		return b.constant("hd_features", ops.Buffer[T](b.mem, rows*M*b.cfg.Text.HiddenSize), rows*M, b.cfg.Text.HiddenSize), nil
	}
	x, err := b.towerGraph(b.cropPatches(batch, from), len(from)*Z*Z)
	if err != nil {
		return nil, err
	}
	proj, err := b.frozenProjector(x)
	if err != nil {
		return nil, err
	}
	src := make([]ops.Source, rows*M)
	for r := range src {
		src[r] = ops.Pad
	}
	for j, blk := range block {
		for cell, s := range hrCellSources(b.cfg) {
			src[blk*M+cell] = ops.Source{Kind: ops.FromToken, Index: j*per + s}
		}
	}
	return ops.Assemble(proj, nil, nil, src, false, false)
}

// cropPatches are the patches [J·Z²·n, 3·P·P] of the HR crops of the images of samples from, in order.
func (b *builder[T]) cropPatches(batch *Batch[T], from []int) []T {
	vc := b.cfg.Vision
	_, n, _, _ := b.cfg.Grid()
	S, Z, pp := vc.ImageSize, b.cfg.Flex.Zoom, 3*vc.PatchSize*vc.PatchSize
	patches := ops.Buffer[T](b.mem, len(from)*Z*Z*n*pp)
	ops.Parallel(len(from), func(j int) {
		px := ops.Convert[T](b.mem, batch.HRPixels[from[j]])
		crops := ops.Scratch[T](b.mem, Z*Z*3*S*S)
		hrCrops(crops, b.cfg, px)
		for c := range Z * Z {
			lrPatches(patches[(j*Z*Z+c)*n*pp:], b.cfg, crops[c*3*S*S:])
		}
		ops.Recycle(b.mem, crops)
		ops.Recycle(b.mem, px)
	})
	return patches
}

// frozenProjector is the projector over x with no gradient to x or to its weights.
func (b *builder[T]) frozenProjector(x *G.Node) (*G.Node, error) {
	h, err := b.noGradAffine(x, "model.mm_projector.0")
	if err == nil {
		h, err = ops.GELU(h)
	}
	if err != nil {
		return nil, err
	}
	return b.noGradAffine(h, "model.mm_projector.2")
}

// noGradAffine is x·Wᵀ + bias of the torch Linear called prefix, with no gradient to anything.
func (b *builder[T]) noGradAffine(x *G.Node, prefix string) (*G.Node, error) {
	w, bias, err := b.weightAndBias(prefix)
	if err != nil {
		return nil, err
	}
	y, err := ops.Linear(x, w, false, false, b.opt.Products)
	if err != nil {
		return nil, err
	}
	return ops.AddBias(y, bias, false, false)
}

// hrCellSources maps each HR token (cell of the zg×zg grid) to its row among one image's tower rows [Z²·n]
// (crop-major, as hrTower lays them out): hrFeatures' permutation.
func hrCellSources(cfg Config) []int {
	Z := cfg.Flex.Zoom
	g, n, zg, M := cfg.Grid()
	src := make([]int, M)
	for j := range Z * Z {
		a, c := j/Z, j%Z
		for i := range g {
			for k := range g {
				src[(a*g+i)*zg+c*g+k] = j*n + i*g + k
			}
		}
	}
	return src
}

// towerPart adds one part of the frozen tower (f: the embeddings, or a layer) over x as one operation of a
// graph on a device: it runs the part as a graph of its own on the same device and gives that graph's
// values back as soon as it is done (Device.Mark, ReleaseAfter), keeping its output [rows, Cv] only. The
// tower has no gradient, so nothing of a part is needed later: the step holds one part's activations at a
// time, where the whole tower in the step's graph would hold them all.
func (b *builder[T]) towerPart(name string, x *G.Node, rows int, f func(*builder[T], *G.Node) (*G.Node, error)) (*G.Node, error) {
	dev := b.opt.Device
	do := func(_ *ops.Arena, in []G.Value) (G.Value, error) {
		mark := dev.Mark()
		sub := b.sub(b.mem, Options{Mode: Train, Device: dev, Products: b.opt.Products})
		defer sub.detach()
		out, err := f(sub, G.NodeFromAny(sub.g, in[0], G.WithName("input")))
		if err == nil {
			err = sub.runAlone(nil, out)
		}
		if err != nil {
			dev.ReleaseAfter(mark)
			return nil, fmt.Errorf("model: %s: %w", name, err)
		}
		v := out.Value()
		dev.ReleaseAfter(mark, v)
		return v, nil
	}
	return ops.Func(ops.FuncSpec{Name: name, Shape: tensor.Shape{rows, b.cfg.Vision.HiddenSize}, Do: do, Anywhere: true}, x)
}
