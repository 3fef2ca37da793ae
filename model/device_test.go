package model

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// hostDevice is a Device whose memory is the host's and whose arithmetic is the CPU's (Kernel.RunOnCPU on
// copies of its inputs), counting what it runs. A graph on it must give the CPU's bits; the counts show
// that every operation of the graph reached the device and that Gorgonia's sums of gradient contributions
// went through the device's engine. Its values say they are not natively accessible, as a GPU's are not.
type hostDevice struct {
	ran     map[string]int
	adds    int
	weights map[string]*tensor.Dense
	lent    int // values lent since the last Release
}

func newHostDevice() *hostDevice {
	return &hostDevice{ran: map[string]int{}, weights: map[string]*tensor.Dense{}}
}

func (d *hostDevice) Run(k ops.Kernel, in []G.Value) (G.Value, error) {
	d.ran[k.Name]++
	host := make([]G.Value, len(in))
	for i, v := range in {
		t, ok := v.(*tensor.Dense)
		if !ok {
			host[i] = v // a scalar
			continue
		}
		if t.Engine() != (hostEngine{d}) {
			return nil, fmt.Errorf("%s: input %d is not the device's", k.Name, i)
		}
		host[i] = plainCopy(t)
	}
	out, err := k.RunOnCPU(host)
	if err != nil {
		return nil, err
	}
	if t, ok := out.(*tensor.Dense); ok {
		return d.lend(t), nil
	}
	return out, nil
}

func plainCopy(t *tensor.Dense) *tensor.Dense {
	return tensor.New(tensor.WithShape(t.Shape().Clone()...), tensor.WithBacking(slices.Clone(t.Data().([]float32))))
}

// lend makes a device value holding a copy of t.
func (d *hostDevice) lend(t *tensor.Dense) *tensor.Dense {
	d.lent++
	data := slices.Clone(t.Data().([]float32))
	return tensor.New(tensor.Of(tensor.Float32), tensor.WithShape(t.Shape().Clone()...), tensor.WithEngine(hostEngine{d}),
		tensor.FromMemory(uintptr(unsafe.Pointer(unsafe.SliceData(data))), uintptr(4*len(data))))
}

func (d *hostDevice) Weight(name string, t *tensor.Dense) (G.Value, error) {
	if w, ok := d.weights[name]; ok {
		return w, nil
	}
	w := d.lend(t)
	d.lent--
	d.weights[name] = w
	return w, nil
}

func (d *hostDevice) Upload(t *tensor.Dense) (G.Value, error) { return d.lend(t), nil }
func (d *hostDevice) Download(v G.Value) (*tensor.Dense, error) {
	return plainCopy(v.(*tensor.Dense)), nil
}
func (d *hostDevice) Engine() tensor.Engine { return hostEngine{d} }
func (d *hostDevice) Release()              { d.lent = 0 }

// hostEngine is the tensor engine of hostDevice's values: Gorgonia's additions of gradient contributions.
type hostEngine struct{ d *hostDevice }

func (hostEngine) AllocAccessible() bool                           { return false }
func (hostEngine) Alloc(int64) (tensor.Memory, error)              { return nil, errors.New("host device: Alloc") }
func (hostEngine) Free(tensor.Memory, int64) error                 { return nil }
func (hostEngine) Memset(tensor.Memory, any) error                 { return errors.New("host device: Memset") }
func (hostEngine) Memclr(tensor.Memory)                            {}
func (hostEngine) Memcpy(_, _ tensor.Memory) error                 { return errors.New("host device: Memcpy") }
func (hostEngine) Accessible(tensor.Memory) (tensor.Memory, error) { return nil, errors.New("host device") }
func (hostEngine) WorksWith(tensor.DataOrder) bool                 { return true }

func (e hostEngine) Add(a, b tensor.Tensor, opts ...tensor.FuncOpt) (tensor.Tensor, error) {
	e.d.adds++
	x, y := a.Data().([]float32), b.Data().([]float32)
	sum := make([]float32, len(x))
	for i := range x {
		sum[i] = x[i] + y[i]
	}
	return e.d.lend(tensor.New(tensor.WithShape(a.Shape().Clone()...), tensor.WithBacking(sum))), nil
}

func (hostEngine) AddScalar(tensor.Tensor, any, bool, ...tensor.FuncOpt) (tensor.Tensor, error) {
	return nil, errors.New("host device: AddScalar")
}

// TestGraphOnDevice runs the tiny golden training case on a device whose arithmetic is the CPU's: the loss,
// every gradient and every selection are the CPU graph's bits, every operation ran on the device and
// every gradient sum went through its engine.
func TestGraphOnDevice(t *testing.T) {
	gc := goldenTrainCase(t)
	w, err := FromTensors(gc.cfg, tensor.Float32, gc.tensor)
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{Mode: Train, Alpha: 0.5, Trainable: defaultTrainable(gc.cfg)}
	cpu, err := Build(w, gc.batch, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	if err := cpu.Run(); err != nil {
		t.Fatal(err)
	}
	dev := newHostDevice()
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
		if !slices.Equal(got[name].Data().([]float32), g.Data().([]float32)) {
			t.Errorf("%s: the gradient differs", name)
		}
		if got[name].Engine() != (hostEngine{dev}) {
			t.Errorf("%s: the gradient is not the device's", name)
		}
	}
	for l := gc.cfg.Flex.NSA; l < gc.cfg.Text.NumLayers; l++ {
		a, err1 := on.Selection(l)
		b, err2 := cpu.Selection(l)
		if err1 != nil || err2 != nil || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("layer %d: selection %v (%v) on the device, %v (%v) on the CPU", l, a, err1, b, err2)
		}
	}
	ops, adds := 0, 0
	for _, n := range on.g.AllNodes() {
		switch op := n.Op(); {
		case op == nil: // an input
		case strings.HasPrefix(reflect.TypeOf(op).String(), "*ops."):
			ops++
		case op.String() == "+ false": // Gorgonia's sum of gradient contributions
			adds++
		}
	}
	ran := 0
	for _, n := range dev.ran {
		ran += n
	}
	if ran != ops || dev.adds != adds || adds == 0 {
		t.Errorf("the device ran %d operations and %d sums; the graph has %d and %d", ran, dev.adds, ops, adds)
	}
	if err := on.Close(); err != nil || dev.lent != 0 {
		t.Errorf("close: %v, %d values still lent", err, dev.lent)
	}
}

func TestDeviceGraphTrainsOnly(t *testing.T) {
	gc := goldenTrainCase(t)
	for _, c := range []struct {
		dt   tensor.Dtype
		mode Mode
	}{{tensor.Float32, Infer}, {tensor.Float64, Train}} {
		w, err := FromTensors(gc.cfg, c.dt, gc.tensor)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Build(w, gc.batch, Options{Mode: c.mode, Device: newHostDevice(), Trainable: defaultTrainable(gc.cfg)})
		if !errors.Is(err, errDeviceInfer) {
			t.Errorf("%v, mode %d: %v", c.dt, c.mode, err)
		}
	}
}
