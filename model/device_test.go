package model

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/internal/devicetest"
	"github.com/flextrain/flextrain/internal/half"
	"github.com/flextrain/flextrain/model/ops"
)

// TestGraphOnDevice runs the tiny golden training case on a device whose arithmetic is the CPU's: the loss,
// every gradient and every selection are the CPU graph's bits (the frozen tower in the graph there, on the
// host here), every operation ran on the device, the towers' too, and every gradient sum went through its
// engine.
func TestGraphOnDevice(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		bf16, recompute, all bool
	}{{"float32", false, false, false}, {"bf16", true, false, false}, {"recompute", false, true, false},
		{"tower trains", false, false, true}, {"bf16 recompute", true, true, false}, {"bf16 tower trains", true, false, true}} {
		t.Run(tc.name, func(t *testing.T) { testGraphOnDevice(t, tc.bf16, tc.recompute, tc.all) })
	}
}

func testGraphOnDevice(t *testing.T, bf16, recompute, all bool) {
	gc, w, opt, cpu := goldenTrainOnCPU(t, bf16, all)
	opt.Recompute = recompute
	dev := devicetest.New()
	opt.Device = dev
	on, err := Build(w, gc.batch, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := on.Run(); err != nil {
		t.Fatal(err)
	}
	if on.Loss() != cpu.Loss() {
		t.Errorf("loss %v on the device, %v on the CPU", on.Loss(), cpu.Loss())
	}
	want := cpu.Grads()
	got := on.Grads()
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("%d gradients on the device, %d on the CPU", len(got), len(want))
	}
	for name, g := range want {
		h, err := dev.Download(got[name])
		if err != nil || !slices.Equal(h.Data().([]float32), g.Data().([]float32)) {
			t.Errorf("%s: the gradient differs (%v)", name, err)
		}
	}
	for l := gc.cfg.Flex.NSA; l < gc.cfg.Text.NumLayers; l++ {
		a, err1 := on.Selection(l)
		b, err2 := cpu.Selection(l)
		if err1 != nil || err2 != nil || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("layer %d: selection %v (%v) on the device, %v (%v) on the CPU", l, a, err1, b, err2)
		}
	}
	ops, adds := map[string]int{}, 0
	for _, n := range on.g.AllNodes() {
		switch op := n.Op(); {
		case op == nil: // an input
		case strings.HasPrefix(reflect.TypeOf(op).String(), "*ops."):
			ops[op.String()]++
		case op.String() == "+ false": // Gorgonia's sum of gradient contributions
			adds++
		}
	}
	for name, n := range ops { // and more: the tower's parts ran theirs in graphs of their own
		if dev.Ran[name] < n {
			t.Errorf("the graph has %d %s, the device ran %d", n, name, dev.Ran[name])
		}
	}
	if dev.Adds < adds || dev.Adds == 0 { // with recomputation the sums are in the layers' own graphs
		t.Errorf("the device ran %d sums; the graph has %d", dev.Adds, adds)
	}
	towers := []string{"TowerEmbed", "TowerLayer0", "ClassPosEmbed", "LayerNorm", "QuickGELU", "FlexAttention", "Select"}
	if all { // the tower in the step's graph, with its backward operations and the projector's
		towers = []string{"ClassPosEmbed", "LayerNorm", "QuickGELU", "FlexAttention", "Select", "ClassPosEmbedGrad0",
			"ClassPosEmbedGrad1", "ClassPosEmbedGrad2", "LayerNormGradX", "LayerNormGradW", "ColSum", "QuickGELUGrad", "GELUGrad"}
	}
	if bf16 { // and the activations held in bfloat16 between the passes, each widened once
		towers = append(towers, "Pack")
		if !all { // frozen matrices, in bfloat16
			towers = append(towers, "LinearHalf")
		}
		if dev.Ran["Unpack"] != dev.Ran["Pack"] {
			t.Errorf("the device packed %d values and unpacked %d", dev.Ran["Pack"], dev.Ran["Unpack"])
		}
	}
	if recompute {
		towers = append(towers, "Layer1", "Layer2Grad", "Concat")
	}
	for _, name := range towers {
		if dev.Ran[name] == 0 {
			t.Errorf("the device ran no %s: %v", name, dev.Ran)
		}
	}
	if err := on.Close(); err != nil || dev.Lent() != 0 {
		t.Errorf("close: %v, %d values still lent", err, dev.Lent())
	}
}

// goldenTrainOnCPU runs the tiny golden training case in float32 on the CPU: the case, its weights (with
// bf16, mixed precision: the frozen matrices held in bfloat16 and the products in bfloat16), the graph's
// options and the graph run (closed with the test).
func goldenTrainOnCPU(t *testing.T, bf16, all bool) (*goldenCase, *Weights, Options, *Graph) {
	t.Helper()
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float32, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{Mode: Train, Alpha: 0.5, Trainable: defaultTrainable(gc.cfg)}
	if all { // the tower and the projector too
		opt.Trainable = func(string) bool { return true }
	}
	if bf16 {
		if err := w.Narrow(half.BFloat16, func(name string) bool { return !opt.Trainable(name) }); err != nil {
			t.Fatal(err)
		}
		opt.Products = ops.BF16
	}
	cpu, err := Build(w, gc.batch, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cpu.Close() })
	if err := cpu.Run(); err != nil {
		t.Fatal(err)
	}
	return gc, w, opt, cpu
}

// TestDeviceGraphRefusals: a graph on a device trains, in float32; anything else is refused before a value
// goes to the device.
func TestDeviceGraphRefusals(t *testing.T) {
	gc := goldenTrainCase(t)
	for _, c := range []struct {
		dt        tensor.Dtype
		mode      Mode
		recompute bool
		want      error
	}{{tensor.Float32, Infer, false, errDeviceInfer}, {tensor.Float64, Train, false, errDeviceInfer},
		{tensor.Float64, Train, true, errDeviceInfer}} {
		w, err := FromTensors(gc.cfg, c.dt, gc.tensor)
		if err != nil {
			t.Fatal(err)
		}
		dev := devicetest.New()
		_, err = Build(w, gc.batch, Options{Mode: c.mode, Device: dev, Trainable: defaultTrainable(gc.cfg), Recompute: c.recompute})
		if !errors.Is(err, c.want) || dev.Lent() != 0 {
			t.Errorf("%v, mode %d, recompute %v: %v (%d values lent); want %v", c.dt, c.mode, c.recompute, err, dev.Lent(), c.want)
		}
	}
}

// keepsAll is a device without ops.Releaser: every value of a graph stays until the graph closes.
type keepsAll struct{ Device }

// TestReleasesLowerThePeak runs the golden training graph on the stand-in device twice: freeing each value
// once nothing reads it (ops.PlanReleases), and keeping every value to the end. The gradients are the same
// bits, and the values' peak (beyond the weights and the batch) is well under the second run's: the
// backward pass's gradients and the forward values it does not read go as it runs.
func TestReleasesLowerThePeak(t *testing.T) {
	for _, tc := range []struct {
		name      string
		recompute bool
		most      float64 // the freeing run's peak, at most this fraction of the other's (measured: 0.29, 0.47)
	}{{"float32", false, 0.4}, {"recompute", true, 0.6}} {
		t.Run(tc.name, func(t *testing.T) {
			var peaks [2]int64
			var grads [2]map[string][]float32
			for i, free := range []bool{true, false} {
				gc, w, opt, _ := goldenTrainOnCPU(t, false, false)
				dev := devicetest.New()
				opt.Device, opt.Recompute = dev, tc.recompute
				if !free {
					opt.Device = keepsAll{dev}
				}
				peaks[i], grads[i] = runOnDevice(t, w, gc.batch, opt, dev)
				if freed := dev.Freed > 0; freed != free {
					t.Errorf("releases %v: the device freed %d values before the graph closed", free, dev.Freed)
				}
			}
			if !reflect.DeepEqual(grads[0], grads[1]) {
				t.Error("the gradients differ with and without releases")
			}
			if float64(peaks[0]) > tc.most*float64(peaks[1]) {
				t.Errorf("values' peak %d bytes with releases, %d without: more than %.2f of it", peaks[0], peaks[1], tc.most)
			}
		})
	}
}

// TestHoldsLowerThePeak runs the golden training graph on the stand-in device with float32 products and in
// mixed precision, where the activations the backward pass reads are held in bfloat16 between the passes
// (ops.PlanHolds): the values' peak beyond the weights is lower, by more with recomputation, where the
// held values are a larger part of what a layer keeps.
func TestHoldsLowerThePeak(t *testing.T) {
	for _, tc := range []struct {
		name      string
		recompute bool
		most      float64 // the mixed-precision peak, at most this fraction of float32's (measured: 0.88, 0.70)
	}{{"plain", false, 0.93}, {"recompute", true, 0.8}} {
		t.Run(tc.name, func(t *testing.T) {
			var peaks [2]int64
			for i, bf16 := range []bool{false, true} {
				gc, w, opt, _ := goldenTrainOnCPU(t, bf16, false)
				dev := devicetest.New()
				opt.Device, opt.Recompute = dev, tc.recompute
				peaks[i], _ = runOnDevice(t, w, gc.batch, opt, dev)
				if packed := dev.Ran["Pack"] > 0; packed != bf16 {
					t.Errorf("bf16 %v: the device packed %d values", bf16, dev.Ran["Pack"])
				}
			}
			if float64(peaks[1]) > tc.most*float64(peaks[0]) {
				t.Errorf("values' peak %d bytes in mixed precision, %d in float32: more than %.2f of it", peaks[1], peaks[0], tc.most)
			}
		})
	}
}

// runOnDevice builds and runs a graph on dev and returns the peak of its values beyond what the device held
// when it was built (the weights and the batch), and its gradients as host numbers.
func runOnDevice(t *testing.T, w *Weights, batch *Batch[float64], opt Options, dev *devicetest.Device) (int64, map[string][]float32) {
	t.Helper()
	m, err := Build(w, batch, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := dev.Usage().PeakBytes
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	return dev.Usage().PeakBytes - base, hostGrads(t, m, dev)
}

// hostGrads brings the gradients of a graph run on dev down, by name.
func hostGrads(t *testing.T, m *Graph, dev Device) map[string][]float32 {
	t.Helper()
	grads := map[string][]float32{}
	for name, g := range m.Grads() {
		h, err := dev.Download(g)
		if err != nil {
			t.Fatal(err)
		}
		grads[name] = h.Data().([]float32)
	}
	return grads
}
