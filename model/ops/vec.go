package ops

// AddTo sets dst[i] += src[i] for every i of dst (src is at least as long).
func AddTo[T Float](dst, src []T) {
	if addVector(dst, src) {
		return
	}
	src = src[:len(dst)]
	for i := range dst {
		dst[i] += src[i]
	}
}

// mulBy sets dst[i] *= src[i] for every i of dst (src is at least as long).
func mulBy[T Float](dst, src []T) {
	if mulVector(dst, src) {
		return
	}
	src = src[:len(dst)]
	for i := range dst {
		dst[i] *= src[i]
	}
}

// recipOnePlus sets s[i] = 1 / (1 + s[i]): σ(x) from s = e^−x.
func recipOnePlus[T Float](s []T) {
	if recipOnePlusVector(s) {
		return
	}
	for i, e := range s {
		s[i] = 1 / (1 + e)
	}
}
