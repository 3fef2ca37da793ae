package model

import (
	"fmt"

	"github.com/flextrain/flextrain/model/ops"
)

// visionFeatures runs the frozen CLIP tower (docs/DESIGN.md §3) on images [images, 3, S, S] and returns each
// one's hs[select_layer] without the CLS row, [images·n, Cv], in a buffer of m's that the caller owns. No
// gradient flows through it. The images share each layer's products, whose rows are independent: an
// image's numbers are the same alone or in a stack.
func visionFeatures[T ops.Float](m *ops.Arena, cfg Config, w params[T], px []T, images int) []T {
	vc := cfg.Vision
	_, n, _, _ := cfg.Grid()
	Cv, P, tokens := vc.HiddenSize, vc.PatchSize, n+1
	S := vc.ImageSize
	patches := ops.Scratch[T](m, images*n*3*P*P)
	for i := range images {
		lrPatches(patches[i*n*3*P*P:], cfg, px[i*3*S*S:])
	}
	embedded := ops.Scratch[T](m, images*n*Cv)
	w.mulNT(embedded, patches, VisionPrefix+"embeddings.patch_embedding.weight", images*n)
	ops.Recycle(m, patches)
	x := ops.Scratch[T](m, images*tokens*Cv)
	cls, pos := w.vec(VisionPrefix+"embeddings.class_embedding"), w.vec(VisionPrefix+"embeddings.position_embedding.weight")
	for i := range images {
		xi := x[i*tokens*Cv : (i+1)*tokens*Cv]
		copy(xi, cls)
		copy(xi[Cv:], embedded[i*n*Cv:(i+1)*n*Cv])
		ops.AddTo(xi, pos)
	}
	ops.Recycle(m, embedded)
	ops.LayerNorm(x, x, w.vec(VisionPrefix+"pre_layrnorm.weight"), w.vec(VisionPrefix+"pre_layrnorm.bias"), Cv, vc.LayerNormEps)
	for l := 0; l < cfg.VisionLayersRun(); l++ {
		visionLayer(m, cfg, w, fmt.Sprintf("%sencoder.layers.%d.", VisionPrefix, l), x, images, tokens)
	}
	out := ops.Scratch[T](m, images*n*Cv)
	for i := range images {
		copy(out[i*n*Cv:(i+1)*n*Cv], x[(i*tokens+1)*Cv:(i+1)*tokens*Cv])
	}
	ops.Recycle(m, x)
	return out
}

// lrPatches cuts an image [3, S, S] into its n patches, each flattened as (channel, row, column), into
// patches [n, 3·P·P], the layout of the patch embedding weight [Cv, 3, P, P].
func lrPatches[T ops.Float](patches []T, cfg Config, px []T) {
	S, P := cfg.Vision.ImageSize, cfg.Vision.PatchSize
	g, _, _, _ := cfg.Grid()
	for gi := 0; gi < g; gi++ {
		for gj := 0; gj < g; gj++ {
			dst := patches[(gi*g+gj)*3*P*P:]
			for c := 0; c < 3; c++ {
				for py := 0; py < P; py++ {
					src := px[(c*S+gi*P+py)*S+gj*P:]
					copy(dst[(c*P+py)*P:(c*P+py+1)*P], src[:P])
				}
			}
		}
	}
}

// visionLayer applies one pre-norm CLIP encoder layer in place to x [images·tokens, Cv], each image's
// tokens attending among themselves (the images on all cores).
func visionLayer[T ops.Float](m *ops.Arena, cfg Config, w params[T], p string, x []T, images, tokens int) {
	vc := cfg.Vision
	Cv, eps, rows := vc.HiddenSize, vc.LayerNormEps, images*tokens
	y, o := ops.Scratch[T](m, len(x)), ops.Scratch[T](m, len(x))
	ops.LayerNorm(y, x, w.vec(p+"layer_norm1.weight"), w.vec(p+"layer_norm1.bias"), Cv, eps)
	q, k, v := affine(m, w, p+"self_attn.q_proj", y, rows), affine(m, w, p+"self_attn.k_proj", y, rows), affine(m, w, p+"self_attn.v_proj", y, rows)
	ops.Parallel(images, func(i int) {
		at := func(s []T) []T { return s[i*tokens*Cv : (i+1)*tokens*Cv] }
		ops.FullAttention(m, at(o), at(q), at(k), at(v), tokens, vc.NumHeads, Cv/vc.NumHeads)
	})
	a := affine(m, w, p+"self_attn.out_proj", o, rows)
	ops.AddTo(x, a)
	ops.LayerNorm(y, x, w.vec(p+"layer_norm2.weight"), w.vec(p+"layer_norm2.bias"), Cv, eps)
	h := affine(m, w, p+"mlp.fc1", y, rows)
	ops.QuickGELU(h)
	f := affine(m, w, p+"mlp.fc2", h, rows)
	ops.AddTo(x, f)
	ops.Recycle(m, y, o, q, k, v, a, h, f)
}

// affine is x·Wᵀ + b for the torch Linear named p, with x [rows, in], in a buffer of m's that the caller owns.
func affine[T ops.Float](m *ops.Arena, w params[T], p string, x []T, rows int) []T {
	b := w.vec(p + ".bias")
	out := len(b)
	y := ops.Scratch[T](m, rows*out)
	w.mulNT(y, x, p+".weight", rows)
	ops.AddRowBias(y, b)
	return y
}

// project is the mlp2x_gelu projector (docs/DESIGN.md §4) without gradient: [rows, Cv] → [rows, D].
func project[T ops.Float](m *ops.Arena, cfg Config, w params[T], x []T, rows int) []T {
	h := affine(m, w, "model.mm_projector.0", x, rows)
	ops.GELUInPlace(h)
	defer ops.Recycle(m, h)
	return affine(m, w, "model.mm_projector.2", h, rows)
}

// hrTower runs the tower on the Z×Z crops of S×S of an image's HR pixels [3, Z·S, Z·S], all at once in
// row-major crop order, and returns their features before the projector, [Z²·n, Cv].
func hrTower[T ops.Float](m *ops.Arena, cfg Config, w params[T], hr []T) []T {
	S, Z := cfg.Vision.ImageSize, cfg.Flex.Zoom
	crops := ops.Scratch[T](m, Z*Z*3*S*S)
	defer ops.Recycle(m, crops)
	hrCrops(crops, cfg, hr)
	return visionFeatures(m, cfg, w, crops, Z*Z)
}

// hrCrops writes the Z×Z crops of S×S of an image's HR pixels [3, Z·S, Z·S] to crops [Z², 3, S, S], in
// row-major crop order.
func hrCrops[T ops.Float](crops []T, cfg Config, hr []T) {
	S, Z := cfg.Vision.ImageSize, cfg.Flex.Zoom
	for j := 0; j < Z*Z; j++ {
		a, b, crop := j/Z, j%Z, crops[j*3*S*S:]
		for c := 0; c < 3; c++ {
			for y := 0; y < S; y++ {
				src := hr[(c*Z*S+a*S+y)*Z*S+b*S:]
				copy(crop[(c*S+y)*S:(c*S+y+1)*S], src[:S])
			}
		}
	}
}

// hrFeatures writes the HR features hd [M, D] of one image, computed from its tower features [Z²·n, Cv]
// (hrTower): the projector over every crop, then token (i, j) of crop (a, b) to HR grid cell
// (a·g + i, b·g + j) (docs/DESIGN.md §4). They are constants: no gradient.
func hrFeatures[T ops.Float](mem *ops.Arena, cfg Config, w params[T], tower, hd []T) {
	Z, D := cfg.Flex.Zoom, cfg.Text.HiddenSize
	g, n, zg, _ := cfg.Grid()
	f := project(mem, cfg, w, tower, Z*Z*n)
	defer ops.Recycle(mem, f)
	for j := 0; j < Z*Z; j++ {
		a, b := j/Z, j%Z
		for i := 0; i < g; i++ {
			for k := 0; k < g; k++ {
				cell := (a*g+i)*zg + b*g + k
				src := (j*n + i*g + k) * D
				copy(hd[cell*D:(cell+1)*D], f[src:src+D])
			}
		}
	}
}
