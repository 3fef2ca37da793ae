package synth

import "math/bits"

// rng is a SplitMix64 generator. It is written out here, rather than taken from math/rand, so that a seed
// gives the same dataset on every Go version and platform: only integer arithmetic, no library stream that
// a release could change.
type rng struct{ s uint64 }

// newRNG returns a generator for one stream, keyed by the dataset seed and any number of stream labels
// (split, sample index, purpose), so that each sample draws from its own stream whatever the worker order.
func newRNG(seed uint64, keys ...uint64) *rng {
	r := &rng{s: mix(seed)}
	for _, k := range keys {
		r.s = mix(r.s ^ mix(k+0x632be59bd9b4e019))
	}
	return r
}

// mix is SplitMix64's output function (Steele, Lea, Flood 2014).
func mix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// next returns the next 64 random bits.
func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix(r.s)
}

// intn returns a number in [0, n) by Lemire's multiply-shift (bias below 2⁻⁵⁰ for the small n used here);
// n ≤ 0 gives 0.
func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	hi, _ := bits.Mul64(r.next(), uint64(n))
	return int(hi)
}

// between returns a number in [lo, hi]; hi < lo gives lo.
func (r *rng) between(lo, hi int) int {
	return lo + r.intn(hi-lo+1)
}

// chance reports true with probability num/den.
func (r *rng) chance(num, den int) bool {
	return r.intn(den) < num
}

// pick returns a random element of xs, which must not be empty.
func pick[T any](r *rng, xs []T) T {
	return xs[r.intn(len(xs))]
}

// shuffle permutes xs in place (Fisher–Yates).
func shuffle[T any](r *rng, xs []T) {
	for i := len(xs) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		xs[i], xs[j] = xs[j], xs[i]
	}
}
