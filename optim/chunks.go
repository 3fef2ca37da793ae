package optim

import "github.com/flextrain/flextrain/internal/par"

// chunk is how many elements one goroutine takes at a time in the optimizer's element loops.
const chunk = 1 << 16

// span is one chunk: elements [lo, hi) of parameter p.
type span struct{ p, lo, hi int }

// spans cuts every parameter into chunks, in parameter order.
func spans[T Float](params []Param[T]) []span {
	var out []span
	for i, p := range params {
		for lo := 0; lo < len(p.Value); lo += chunk {
			out = append(out, span{i, lo, min(lo+chunk, len(p.Value))})
		}
	}
	return out
}

// eachChunk calls f on every chunk of every parameter, on up to GOMAXPROCS goroutines. i numbers the chunks
// in parameter order, so that per-chunk results can be combined in an order the scheduling does not change.
func eachChunk[T Float](params []Param[T], f func(i int, p Param[T], lo, hi int)) {
	eachSpan(params, spans(params), f)
}

// eachSpan is eachChunk over chunks already cut (spans(params)), for a caller that sizes its per-chunk results
// by them.
func eachSpan[T Float](params []Param[T], jobs []span, f func(i int, p Param[T], lo, hi int)) {
	par.Do(len(jobs), func(j int) {
		s := jobs[j]
		f(j, params[s.p], s.lo, s.hi)
	})
}
