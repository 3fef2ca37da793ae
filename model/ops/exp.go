package ops

import "math"

// expf is e^x in float32 to within 2 ulp, several times faster than math.Exp: x = n·ln2 + r with
// |r| ≤ ln2/2, e^r by a degree-6 polynomial, 2^n by building the exponent bits. Below −87.3 it is 0.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375
		ln2lo = -2.12194440e-4
	)
	if !(x > -87.33654) { // below, e^x is subnormal or 0; NaN passes through
		if x != x {
			return x
		}
		return 0
	}
	if x > 88 { // 2ⁿ would leave the exponent range: rare outside softmax, where x ≤ 0
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

// exp is e^x in T: float32 by expf, float64 by math.Exp.
func exp[T Float](x T) T {
	if f, ok := any(x).(float32); ok {
		return T(expf(f))
	}
	return T(math.Exp(float64(x)))
}
