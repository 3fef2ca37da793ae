package model

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// TestRecomputeSameNumbers: the tiny golden training case with recomputation gives the loss, every
// gradient and every selection of the graph without it, bit for bit, in float32, float64 and mixed precision
// (bfloat16 products, the activations held in bfloat16 between the passes), in each view.
func TestRecomputeSameNumbers(t *testing.T) {
	gc := goldenTrainCase(t)
	attentionOnly := func(name string) bool { // a layer's MLP and norms frozen: they run inside, untouched
		return strings.Contains(name, "self_attn.") && defaultTrainable(gc.cfg)(name)
	}
	for _, prec := range []struct {
		dt       tensor.Dtype
		products ops.Precision
	}{{tensor.Float32, ops.Native}, {tensor.Float64, ops.Native}, {tensor.Float32, ops.BF16}} {
		dt := prec.dt
		for _, tc := range []struct {
			view      View
			trainable func(string) bool
		}{{ViewFlex, defaultTrainable(gc.cfg)}, {ViewLR, defaultTrainable(gc.cfg)}, {ViewHDSeq, defaultTrainable(gc.cfg)},
			{ViewFlex, attentionOnly}, {ViewFlex, trainAll}} {
			view := tc.view
			t.Run(fmt.Sprintf("%v-%v/view%d", dt, prec.products, view), func(t *testing.T) {
				w, err := FromTensors(gc.cfg, dt, gc.tensor)
				if err != nil {
					t.Fatal(err)
				}
				opt := Options{Mode: Train, Alpha: 0.5, Trainable: tc.trainable, View: view, Products: prec.products}
				plain, plainLoss := runLoss(t, w, gc.batch, opt)
				opt.Recompute = true
				re, reLoss := runLoss(t, w, gc.batch, opt)
				if reLoss != plainLoss {
					t.Errorf("loss %v recomputed, %v not", reLoss, plainLoss)
				}
				want, got := plain.Grads(), re.Grads()
				if len(got) != len(want) || len(want) == 0 {
					t.Fatalf("%d gradients recomputed, %d not", len(got), len(want))
				}
				for name, g := range want {
					if !equalBits(got[name], g) {
						t.Errorf("%s: the gradient differs", name)
					}
				}
				for l := gc.cfg.Flex.NSA; view == ViewFlex && l < gc.cfg.Text.NumLayers; l++ {
					a, _ := re.Selection(l)
					b, _ := plain.Selection(l)
					if fmt.Sprint(a) != fmt.Sprint(b) {
						t.Errorf("layer %d: selection %v recomputed, %v not", l, a, b)
					}
				}
				if n := recomputedLayers(re); n == 0 {
					t.Error("no layer was recomputed")
				}
			})
		}
	}
}

// recomputedLayers counts the recomputed layers' operations in a graph.
func recomputedLayers(m *Graph) int {
	n := 0
	for _, node := range m.g.AllNodes() {
		if op := node.Op(); op != nil {
			var l int
			if _, err := fmt.Sscanf(op.String(), "Layer%d", &l); err == nil {
				n++
			}
		}
	}
	return n
}

func equalBits(a, b *tensor.Dense) bool {
	switch x := a.Data().(type) {
	case []float32:
		return slices.Equal(x, b.Data().([]float32))
	case []float64:
		return slices.Equal(x, b.Data().([]float64))
	}
	return false
}
