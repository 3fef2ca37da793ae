package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// TestVisionStackMatchesAlone checks that the tower gives each image of a stack the bits it gives the image
// alone (float32 and float64, the golden tiny tower), so that a crop's features do not depend on the crops
// beside it: the feature cache and the HR features rely on it.
func TestVisionStackMatchesAlone(t *testing.T) {
	gc := goldenTrainCase(t)
	S := gc.cfg.Vision.ImageSize
	_, n, _, _ := gc.cfg.Grid()
	Cv, size := gc.cfg.Vision.HiddenSize, 3*S*S
	rng := rand.New(rand.NewPCG(3, 4))
	px := make([]float64, 3*size)
	for i := range px {
		px[i] = rng.NormFloat64()
	}
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
		w, err := FromTensors(gc.cfg, dt, gc.tensor)
		if err != nil {
			t.Fatal(err)
		}
		if dt == tensor.Float32 {
			stackMatchesAlone[float32](t, gc.cfg, w, px, size, n*Cv)
		} else {
			stackMatchesAlone[float64](t, gc.cfg, w, px, size, n*Cv)
		}
	}
}

func stackMatchesAlone[T ops.Float](t *testing.T, cfg Config, w *Weights, px []float64, size, feats int) {
	t.Helper()
	get := params[T]{w: w}
	in := ops.Convert[T](nil, px)
	images := len(px) / size
	stack := visionFeatures(nil, cfg, get, in, images)
	for i := range images {
		alone := visionFeatures(nil, cfg, get, in[i*size:(i+1)*size], 1)
		for j, v := range alone {
			if s := stack[i*feats+j]; math.Float64bits(float64(s)) != math.Float64bits(float64(v)) {
				t.Fatalf("%T image %d of %d, feature %d: %v in the stack, %v alone", v, i, images, j, s, v)
			}
		}
	}
}
