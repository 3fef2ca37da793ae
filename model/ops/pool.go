package ops

import (
	"sync"
	"unsafe"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The buffer pool keeps the backing arrays of a finished graph's values so that the next step's operations
// reuse them instead of allocating: a training step would otherwise allocate every activation anew.
// Buffers are kept by exact length, which repeats from step to step for batches of the same shape.
var bufPool = struct {
	sync.Mutex
	f32 map[int][][]float32
	f64 map[int][][]float64
}{f32: map[int][][]float32{}, f64: map[int][][]float64{}}

// maxPooled bounds how many buffers of one length the pool keeps.
const maxPooled = 256

// getBuf returns a zeroed buffer of n elements, from the pool when it has one.
func getBuf[T Float](n int) []T {
	bufPool.Lock()
	var b []T
	if isFloat32[T]() {
		b, _ = any(take(bufPool.f32, n)).([]T)
	} else {
		b, _ = any(take(bufPool.f64, n)).([]T)
	}
	bufPool.Unlock()
	if b == nil {
		return make([]T, n)
	}
	clear(b)
	return b
}

func isFloat32[T Float]() bool {
	var z T
	_, ok := any(z).(float32)
	return ok
}

func take[E any](m map[int][][]E, n int) []E {
	list := m[n]
	if len(list) == 0 {
		return nil
	}
	b := list[len(list)-1]
	m[n] = list[:len(list)-1]
	return b
}

func give[E any](m map[int][][]E, b []E) {
	if len(b) > 0 && len(m[len(b)]) < maxPooled {
		m[len(b)] = append(m[len(b)], b)
	}
}

// Release hands the buffers of every computed value of g (not its inputs: weights and constants) back to
// the pool. Nothing may read those values afterwards.
func Release(g *G.ExprGraph) {
	seen := map[unsafe.Pointer]bool{}
	bufPool.Lock()
	defer bufPool.Unlock()
	for _, n := range g.AllNodes() {
		if n.Op() == nil { // an input: a weight or a constant
			continue
		}
		d, ok := n.Value().(*tensor.Dense)
		if !ok || d.Size() == 0 {
			continue
		}
		switch x := d.Data().(type) {
		case []float32:
			if p := unsafe.Pointer(&x[0]); !seen[p] {
				seen[p] = true
				give(bufPool.f32, x)
			}
		case []float64:
			if p := unsafe.Pointer(&x[0]); !seen[p] {
				seen[p] = true
				give(bufPool.f64, x)
			}
		}
	}
}
