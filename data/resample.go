package data

// aaWeights are the taps of one output index of the antialiased bilinear resampling.
type aaWeights struct {
	first int       // first input index
	w     []float32 // normalised weights of inputs first, first+1, …
}

// aaTaps computes, for an input of length in and an output of length out, PyTorch's
// interpolate(mode="bilinear", antialias=True, align_corners=False) taps
// (aten/src/ATen/native/cpu/UpSampleKernel.cpp, _compute_indices_min_size_weights_aa):
//
//	scale = in/out; support = scale (bilinear's half-width 1, stretched by the scale when downsampling)
//	center = scale·(i + 0.5); xmin = max(int(center − support + 0.5), 0); xmax = min(int(center + support + 0.5), in)
//	w_j = tent((j + xmin − center + 0.5) / scale), tent(x) = max(0, 1 − |x|); then w /= Σw
//
// At the borders the taps that would fall outside are dropped and the rest renormalised.
func aaTaps(in, out int) []aaWeights {
	scale := float64(in) / float64(out)
	support, inv := 1.0, 1.0
	if scale >= 1 {
		support, inv = scale, 1/scale
	}
	taps := make([]aaWeights, out)
	for i := range taps {
		center := scale * (float64(i) + 0.5)
		xmin := max(int(center-support+0.5), 0) // int() truncates toward zero, as the C++ cast does
		xmax := min(int(center+support+0.5), in)
		w := make([]float64, xmax-xmin)
		total := 0.0
		for j := range w {
			w[j] = tent((float64(j+xmin) - center + 0.5) * inv)
			total += w[j]
		}
		t := aaWeights{first: xmin, w: make([]float32, len(w))}
		for j := range w {
			if total != 0 {
				t.w[j] = float32(w[j] / total)
			}
		}
		taps[i] = t
	}
	return taps
}

func tent(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// DownsampleAA resizes a [c, side, side] tensor to [c, side/z, side/z] with PyTorch's antialiased bilinear
// interpolation (align_corners=False): separable, rows first, then columns. For the integer factor z each
// interior output is a tent of half-width z over the inputs, so an LR pixel averages its z×z block and
// leaks into the neighbours with falling weight, as CLIP sees it in the reference.
func DownsampleAA(src []float32, c, side, z int) []float32 {
	out := side / z
	taps := aaTaps(side, out)
	tmp := make([]float32, c*side*out) // [c, side, out]: horizontal pass
	for p := range c {
		for y := range side {
			row := src[(p*side+y)*side:][:side]
			dst := tmp[(p*side+y)*out:][:out]
			for x, t := range taps {
				dst[x] = dot(row[t.first:], t.w)
			}
		}
	}
	res := make([]float32, c*out*out)
	col := make([]float32, side)
	for p := range c {
		for x := range out {
			for y := range side {
				col[y] = tmp[(p*side+y)*out+x]
			}
			for y, t := range taps {
				res[(p*out+y)*out+x] = dot(col[t.first:], t.w)
			}
		}
	}
	return res
}

// dot is Σ a[j]·w[j] over w.
func dot(a, w []float32) float32 {
	var s float32
	for j, wj := range w {
		s += a[j] * wj
	}
	return s
}
