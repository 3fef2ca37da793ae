package ops

import "math"

// The constants of expf, typed float32 as its arithmetic uses them; expConsts hands the same values to the
// vector version.
const (
	log2e   float32 = 1.44269504088896341
	ln2hi   float32 = 0.693359375
	ln2lo   float32 = -2.12194440e-4
	expLow  float32 = -87.33654 // at or below, e^x is subnormal or 0
	expHigh float32 = 88        // above, 2ⁿ would leave the exponent range
)

// expf is e^x in float32 to within 2 ulp, several times faster than math.Exp: x = n·ln2 + r with
// |r| ≤ ln2/2, e^r by a degree-6 polynomial, 2^n by building the exponent bits. Below −87.3 it is 0.
func expf(x float32) float32 {
	if !(x > expLow) { // NaN passes through
		if x != x {
			return x
		}
		return 0
	}
	if x > expHigh { // rare outside softmax, where x ≤ 0
		return float32(math.Exp(float64(x)))
	}
	t := x * log2e
	ni := int32(t - 0.5) // round to nearest: truncation moves toward zero
	if t >= 0 {
		ni = int32(t + 0.5)
	}
	n := float32(ni)
	r := x - n*ln2hi - n*ln2lo
	p := float32(1.0/720)*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	return p * math.Float32frombits(uint32(ni+127)<<23)
}

// expfs sets dst[i] = expf(src[i]·a + b) for every i of src (dst may be src), the product rounded before
// the sum: bit for bit the scalar expression, 16 at a time where the CPU has AVX-512. A block of 16 with a
// NaN or an exponent above expHigh is left to expf.
func expfs(dst, src []float32, a, b float32) {
	dst = dst[:len(src)]
	i := 0
	for {
		i += expBlocks(dst[i:], src[i:], a, b)
		for end := min(i+16, len(src)); i < end; i++ {
			dst[i] = expf(float32(src[i]*a) + b)
		}
		if i == len(src) {
			return
		}
	}
}

// expShifted sets x[i] = exp(x[i] − m) in place, through expfs in float32.
func expShifted[T Float](x []T, m T) {
	if f, ok := any(x).([]float32); ok {
		expfs(f, f, 1, -float32(m)) // x·1 + (−m) is x − m exactly
		return
	}
	for i, v := range x {
		x[i] = exp(v - m)
	}
}

// sigmoids sets s[i] = σ(k·x[i]) = 1/(1+e^−k·x[i]) for every i of x, bit for bit sigm(k·x[i]).
func sigmoids[T Float](s, x []T, k T) {
	s = s[:len(x)]
	f, ok := any(s).([]float32)
	if !ok {
		for i, v := range x {
			s[i] = sigm(k * v)
		}
		return
	}
	expfs(f, any(x).([]float32), -float32(k), 0) // e^(−k·x): (−k)·x is −(k·x) exactly
	recipOnePlus(f)
}

// exp is e^x in T: float32 by expf, float64 by math.Exp.
func exp[T Float](x T) T {
	if f, ok := any(x).(float32); ok {
		return T(expf(f))
	}
	return T(math.Exp(float64(x)))
}
