package model

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/flextrain/flextrain/model/ops"
)

// lookup returns the data of a named weight in the element type T.
type lookup[T ops.Float] func(name string) []T

// visionFeatures runs the frozen CLIP tower (DESIGN.md §3) on one image [3, S, S] and returns
// hs[select_layer] without the CLS row, [n, Cv], in a buffer of m's that the caller owns. No gradient
// flows through it.
func visionFeatures[T ops.Float](m *ops.Arena, cfg Config, w lookup[T], px []T) []T {
	vc := cfg.Vision
	_, n, _, _ := cfg.Grid()
	Cv, P, tokens := vc.HiddenSize, vc.PatchSize, n+1
	x := ops.Scratch[T](m, tokens*Cv)
	patches := lrPatches(m, cfg, px)
	ops.MatMulNT(x[Cv:], patches, w(VisionPrefix+"embeddings.patch_embedding.weight"), n, 3*P*P, Cv)
	ops.Recycle(m, patches)
	copy(x[:Cv], w(VisionPrefix+"embeddings.class_embedding"))
	pos := w(VisionPrefix + "embeddings.position_embedding.weight")
	for i := range x {
		x[i] += pos[i]
	}
	ops.LayerNorm(x, x, w(VisionPrefix+"pre_layrnorm.weight"), w(VisionPrefix+"pre_layrnorm.bias"), Cv, vc.LayerNormEps)
	for l := 0; l < cfg.VisionLayersRun(); l++ {
		visionLayer(m, cfg, w, fmt.Sprintf("%sencoder.layers.%d.", VisionPrefix, l), x, tokens)
	}
	out := ops.Scratch[T](m, n*Cv)
	copy(out, x[Cv:])
	ops.Recycle(m, x)
	return out
}

// lrPatches cuts an image [3, S, S] into its n patches, each flattened as (channel, row, column): [n, 3·P·P],
// the layout of the patch embedding weight [Cv, 3, P, P], in a buffer of m's that the caller owns.
func lrPatches[T ops.Float](m *ops.Arena, cfg Config, px []T) []T {
	S, P := cfg.Vision.ImageSize, cfg.Vision.PatchSize
	g, n, _, _ := cfg.Grid()
	patches := ops.Scratch[T](m, n*3*P*P)
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
	return patches
}

// visionLayer applies one pre-norm CLIP encoder layer to x [tokens, Cv] in place.
func visionLayer[T ops.Float](m *ops.Arena, cfg Config, w lookup[T], p string, x []T, tokens int) {
	vc := cfg.Vision
	Cv, eps := vc.HiddenSize, vc.LayerNormEps
	y, o := ops.Scratch[T](m, len(x)), ops.Scratch[T](m, len(x))
	ops.LayerNorm(y, x, w(p+"layer_norm1.weight"), w(p+"layer_norm1.bias"), Cv, eps)
	q, k, v := affine(m, w, p+"self_attn.q_proj", y, tokens, Cv), affine(m, w, p+"self_attn.k_proj", y, tokens, Cv), affine(m, w, p+"self_attn.v_proj", y, tokens, Cv)
	ops.FullAttention(m, o, q, k, v, tokens, vc.NumHeads, Cv/vc.NumHeads)
	a := affine(m, w, p+"self_attn.out_proj", o, tokens, Cv)
	addInto(x, a)
	ops.LayerNorm(y, x, w(p+"layer_norm2.weight"), w(p+"layer_norm2.bias"), Cv, eps)
	h := affine(m, w, p+"mlp.fc1", y, tokens, Cv)
	ops.QuickGELU(h)
	f := affine(m, w, p+"mlp.fc2", h, tokens, vc.IntermediateSize)
	addInto(x, f)
	ops.Recycle(m, y, o, q, k, v, a, h, f)
}

// affine is x·Wᵀ + b for the torch Linear named p, with x [rows, in], in a buffer of m's that the caller owns.
func affine[T ops.Float](m *ops.Arena, w lookup[T], p string, x []T, rows, in int) []T {
	wt, b := w(p+".weight"), w(p+".bias")
	out := len(b)
	y := ops.Scratch[T](m, rows*out)
	ops.MatMulNT(y, x, wt, rows, in, out)
	ops.AddRowBias(y, b)
	return y
}

func addInto[T ops.Float](x, y []T) {
	for i := range x {
		x[i] += y[i]
	}
}

// project is the mlp2x_gelu projector (DESIGN.md §4) without gradient: [rows, Cv] → [rows, D].
func project[T ops.Float](m *ops.Arena, cfg Config, w lookup[T], x []T, rows int) []T {
	h := affine(m, w, "model.mm_projector.0", x, rows, cfg.Vision.HiddenSize)
	ops.GELUInPlace(h)
	defer ops.Recycle(m, h)
	return affine(m, w, "model.mm_projector.2", h, rows, cfg.Text.HiddenSize)
}

// hrTower runs the tower on the Z×Z crops of S×S of an image's HR pixels [3, Z·S, Z·S], in row-major crop
// order, and returns their features before the projector, [Z²·n, Cv]. The crops are independent, so they
// run on all cores; each crop's numbers do not depend on the scheduling.
func hrTower[T ops.Float](m *ops.Arena, cfg Config, w lookup[T], hr []T) []T {
	S, Z, Cv := cfg.Vision.ImageSize, cfg.Flex.Zoom, cfg.Vision.HiddenSize
	_, n, _, _ := cfg.Grid()
	out := ops.Scratch[T](m, Z*Z*n*Cv)
	var wg sync.WaitGroup
	next := make(chan int, Z*Z)
	for j := 0; j < Z*Z; j++ {
		next <- j
	}
	close(next)
	for range min(runtime.GOMAXPROCS(0), Z*Z) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			crop := ops.Scratch[T](m, 3*S*S)
			for j := range next {
				a, b := j/Z, j%Z
				for c := 0; c < 3; c++ {
					for y := 0; y < S; y++ {
						src := hr[(c*Z*S+a*S+y)*Z*S+b*S:]
						copy(crop[(c*S+y)*S:(c*S+y+1)*S], src[:S])
					}
				}
				f := visionFeatures(m, cfg, w, crop)
				copy(out[j*n*Cv:(j+1)*n*Cv], f)
				ops.Recycle(m, f)
			}
			ops.Recycle(m, crop)
		}()
	}
	wg.Wait()
	return out
}

// hrFeatures writes the HR features hd [M, D] of one image, computed from its tower features [Z²·n, Cv]
// (hrTower): the projector over every crop, then token (i, j) of crop (a, b) to HR grid cell
// (a·g + i, b·g + j) (DESIGN.md §4). They are constants: no gradient.
func hrFeatures[T ops.Float](mem *ops.Arena, cfg Config, w lookup[T], tower, hd []T) {
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
