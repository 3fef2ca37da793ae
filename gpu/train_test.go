//go:build gpu

package gpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
	"github.com/flextrain/flextrain/optim"
)

// TestTrainingStep: a step on the device, from a graph's gradients to AdamW, gives the bits of the CPU's
// (optim.Accumulator, then optim.AdamW), for a gradient alone and for two micro-batches; and the step's
// gradients are the graph's buffers, taken from it (a weight's own, a part of a packed value), but a copy
// where two weights share one, zeros where the loss did not reach, and go back to the device after the
// update, never twice; the device's events time the step.
func TestTrainingStep(t *testing.T) {
	cases := []struct {
		name   string
		tokens []int // per micro-batch; one alone
	}{
		{"alone", []int{1}},
		{"micro-batches", []int{3, 5}},
		{"first without tokens", []int{0, 4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := openDevice(t)
			rng := rand.New(rand.NewPCG(7, uint64(len(c.tokens))))
			shapes := map[string][]int{"a": {3, 4}, "b": {5}, "shared": {3, 4}, "unused": {2}}
			names := []string{"a", "b", "shared", "unused"}
			host, cpu := make([]optim.Param[float32], len(names)), make([]optim.Param[float32], len(names))
			for i, name := range names {
				n := shapes[name][0]
				if len(shapes[name]) > 1 {
					n *= shapes[name][1]
				}
				v := randoms(rng, n)
				host[i] = optim.Param[float32]{Name: name, Shape: shapes[name], Value: slices.Clone(v), Grad: make([]float32, n)}
				cpu[i] = optim.Param[float32]{Name: name, Shape: shapes[name], Value: v, Grad: make([]float32, n)}
			}
			run := d.Training(host)
			defer run.Close()
			alone := len(c.tokens) == 1
			var acc optim.Accumulator[float32]
			total := 0
			for mb, tokens := range c.tokens {
				ga, gb := randoms(rng, 12), randoms(rng, 8) // b's gradient: values 2 to 6 of 8, a part of a packed value
				ga[1] = float32(math.Copysign(0, -1))
				for i, g := range [][]float32{ga, gb[2:7], ga, make([]float32, 2)} {
					copy(cpu[i].Grad, g)
				}
				if !alone {
					if err := acc.Add(cpu, tokens); err != nil {
						t.Fatal(err)
					}
				}
				va, vb := graphValue(t, run.Graphs, ga, 3, 4), graphValue(t, run.Graphs, gb, 8)
				whole, _ := buffer(va)
				packed, _ := buffer(vb)
				part := Buffer{ptr: packed.at(2), n: 5}
				grads := map[string]*tensor.Dense{"a": va, "shared": va, "b": run.value(part, 5)}
				if _, err := run.Run(ops.Kernel{Name: "Add"}, []G.Value{va, va}); err != nil { // the step's first operation
					t.Fatal(err)
				}
				if err := run.Accumulate(grads, tokens, alone); err != nil {
					t.Fatal(err)
				}
				if first := mb == 0 || c.tokens[0] == 0 && mb == 1; first && tokens > 0 {
					if run.grads["a"].ptr != whole.ptr || run.grads["b"].ptr != part.ptr {
						t.Errorf("micro-batch %d: a's or b's gradient was copied, not taken from the graph", mb)
					}
					for _, name := range []string{"shared", "unused"} {
						if g := run.grads[name]; overlaps(g, whole) || overlaps(g, packed) {
							t.Errorf("micro-batch %d: %s's gradient shares a buffer with another's", mb, name)
						}
					}
				}
				run.Release() // the graph closes: what the step took stays
				if tokens > 0 {
					gaveBack(t, d, run.grads["a"])
					gaveBack(t, d, Buffer{ptr: run.grads["b"].ptr - 8, n: 8}) // the packed value's block
				}
				total += tokens
			}
			opt, cpuOpt := optim.NewAdamW[float32](0.9, 0.95, 1e-8, 0.1), optim.NewAdamW[float32](0.9, 0.95, 1e-8, 0.1)
			if _, err := run.Update(opt, 1e-2, 0, total, alone); err != nil {
				t.Fatal(err)
			}
			if len(run.grads) != 0 {
				t.Errorf("%d gradients kept after the update", len(run.grads))
			}
			if u := d.Usage(); u.StepTime <= 0 || d.stepping.Load() {
				t.Errorf("the step took %v on the device (by its events), still open %v", u.StepTime, d.stepping.Load())
			}
			if !alone {
				if _, err := acc.Finish(cpu); err != nil {
					t.Fatal(err)
				}
			}
			if err := cpuOpt.Update(cpu, 1e-2); err != nil {
				t.Fatal(err)
			}
			if err := run.Sync(opt); err != nil {
				t.Fatal(err)
			}
			for i, p := range host {
				for j, got := range p.Value {
					if want := cpu[i].Value[j]; math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("%s[%d] = %v after the device's step, %v after the CPU's", p.Name, j, got, want)
					}
				}
				for j, got := range opt.M[p.Name] {
					if want := cpuOpt.M[p.Name][j]; math.Float32bits(got) != math.Float32bits(want) {
						t.Fatalf("m of %s[%d] = %v on the device, %v on the CPU", p.Name, j, got, want)
					}
				}
			}
		})
	}
}

// gaveBack fails when the device's cache would hand out b, which is in use: the next allocations of its
// size class (as many as the test's graphs lent) are all other blocks.
func gaveBack(t *testing.T, d *Device, b Buffer) {
	t.Helper()
	var got []Buffer
	defer func() {
		for _, a := range got {
			d.Free(a)
		}
	}()
	for range 8 {
		a, err := d.Alloc(b.n)
		if err != nil {
			t.Fatal(err)
		}
		if got = append(got, a); a.ptr == b.ptr {
			t.Fatal("the graph's Release gave back a gradient that the step took over")
		}
	}
}
