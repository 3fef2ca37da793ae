//go:build gpu

package gpu

import (
	"fmt"
	"math"

	"github.com/flextrain/flextrain/optim"
)

// Param is a trainable weight held on the device: its values, gradient and AdamW moments (all as long as
// the weight), with the name and shape that optim knows it by.
type Param struct {
	Name              string
	Shape             []int
	Value, Grad, M, V Buffer
}

// AdamWStep is one optimizer step on the device: the gradients clipped to a global norm of at most maxNorm
// (optim.ClipGradNorm: coefficient maxNorm/(norm + 1e-6) when below 1; maxNorm ≤ 0 measures only), then
// AdamW with o's hyperparameters at step o.Step+1 (optim.AdamW.Update, decay only for tensors of two
// dimensions or more), and o.Step advanced. It returns the norm before clipping; a norm that is not finite
// changes nothing and is an error wrapping optim.ErrNonFinite. o's moments stay on the device: Moments
// copies them into o.M and o.V for a checkpoint.
func (d *Device) AdamWStep(o *optim.AdamW[float32], params []Param, lr, maxNorm float64) (float64, error) {
	grads := make([]Buffer, len(params))
	for i, p := range params {
		grads[i] = p.Grad
	}
	sum, err := d.sumSquaresAll(grads)
	if err != nil {
		return 0, err
	}
	norm := math.Sqrt(sum)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, fmt.Errorf("%w: %g", optim.ErrNonFinite, norm)
	}
	if coef := maxNorm / (norm + 1e-6); maxNorm > 0 && coef < 1 {
		for _, p := range params {
			if err := d.Scale(p.Grad, float32(coef)); err != nil {
				return norm, err
			}
		}
	}
	o.Step++
	bc1, bc2 := 1-math.Pow(o.Beta1, float64(o.Step)), 1-math.Pow(o.Beta2, float64(o.Step))
	for _, p := range params {
		k := AdamWConsts{B1: float32(o.Beta1), C1: float32(1 - o.Beta1), B2: float32(o.Beta2), C2: float32(1 - o.Beta2),
			D1: float32(bc1), D2: float32(bc2), Eps: float32(o.Eps), LR: float32(lr)}
		if len(p.Shape) >= 2 {
			k.WD = float32(o.WeightDecay)
		}
		if err := d.AdamW(p.Value, p.Grad, p.M, p.V, k); err != nil {
			return norm, err
		}
	}
	return norm, nil
}

// Moments copies the AdamW moments of params from the device into o.M and o.V, as optim keeps them: a
// checkpoint of a GPU run then holds the same bytes as a CPU run's of the same state.
func (d *Device) Moments(o *optim.AdamW[float32], params []Param) error {
	if o.M == nil {
		o.M, o.V = map[string][]float32{}, map[string][]float32{}
	}
	for _, p := range params {
		m, v := make([]float32, p.M.n), make([]float32, p.V.n)
		if err := d.Download(m, p.M); err != nil {
			return err
		}
		if err := d.Download(v, p.V); err != nil {
			return err
		}
		o.M[p.Name], o.V[p.Name] = m, v
	}
	return nil
}
