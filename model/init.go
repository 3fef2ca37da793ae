package model

import (
	"math/rand/v2"

	"gorgonia.org/tensor"
)

// initStd is the standard deviation of every randomly drawn weight: LLaMA's initializer_range and CLIP's
// (factor 1) scale, small enough that a fresh deep stack neither explodes nor saturates the softmax.
const initStd = 0.02

// initStream is the PCG stream constant ("flexinit"), fixed so that the seed alone picks the weights.
const initStream = 0x666c6578696e6974

// InitWeights returns freshly initialised weights for the model of cfg, LLaMA/CLIP style: matrices,
// class and position embeddings N(0, 0.02), norm weights 1, biases 0, and every k_proj_hd/v_proj_hd a copy
// of its layer's k_proj/v_proj (docs/DESIGN.md §7). The draws come from a math/rand/v2 PCG seeded by seed only,
// in a fixed order, so the same seed gives bit-identical weights; they are drawn in float64 and rounded,
// so a Float32 store holds the rounded values of the Float64 one. It returns nil when cfg is invalid
// (Config.Validate) or dt is neither tensor.Float32 nor tensor.Float64.
func InitWeights(cfg Config, dt tensor.Dtype, seed uint64) *Weights {
	if checkStore(cfg, dt) != nil {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, initStream))
	w := &Weights{cfg: cfg, dtype: dt, tensors: map[string]*tensor.Dense{}}
	specs := weightSpecs(cfg)
	for _, sp := range specs {
		if sp.init != initCopy {
			w.tensors[sp.name] = drawDense(rng, sp, dt)
		}
	}
	w.copyInit(specs, func(string, string) bool { return false })
	return w
}

// drawDense fills one weight according to its kind.
func drawDense(rng *rand.Rand, sp weightSpec, dt tensor.Dtype) *tensor.Dense {
	n := 1
	for _, d := range sp.shape {
		n *= d
	}
	if dt == tensor.Float64 {
		return tensor.New(tensor.WithShape(sp.shape...), tensor.WithBacking(draw[float64](rng, sp.init, n)))
	}
	return tensor.New(tensor.WithShape(sp.shape...), tensor.WithBacking(draw[float32](rng, sp.init, n)))
}

// draw is n values of kind init, each drawn in float64 and rounded to T (no float64 copy of the whole
// weight: a 7B model's draws are the time of its bench's start).
func draw[T float32 | float64](rng *rand.Rand, init initKind, n int) []T {
	v := make([]T, n)
	switch init {
	case initNormal:
		for i := range v {
			v[i] = T(initStd * rng.NormFloat64())
		}
	case initOnes:
		for i := range v {
			v[i] = 1
		}
	}
	return v
}
