package model

import (
	"errors"
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// Device is where a graph's values live when they are not in host memory: a GPU (package gpu). The graph
// is the one the CPU runs; the device runs its operations (ops.Device), holds the weights across graphs and
// lends every other value for one graph. Only the batch's values go up and only the loss comes down.
type Device interface {
	ops.Device
	// Weight returns the device's copy of weight name, made from t the first time and kept across graphs (an
	// optimizer on the device updates it in place).
	Weight(name string, t *tensor.Dense) (G.Value, error)
	// Upload returns a device copy of t, freed by Release.
	Upload(t *tensor.Dense) (G.Value, error)
	// Download returns a host copy of a device value.
	Download(v G.Value) (*tensor.Dense, error)
	// Engine is the tensor engine of the device's values: Gorgonia's own operations reach the device through it.
	Engine() tensor.Engine
	// Release frees every value lent since the last Release (the graph's values and what its operations saved).
	Release()
}

// errDeviceInfer refuses an inference graph on a device: decoding reads the graph's values on the host.
var errDeviceInfer = errors.New("model: a graph on a device trains only, in float32; inference runs on the CPU")

// bind adds t to the graph under name: as it is, or as the device's copy (a weight is kept on the device
// across graphs, any other value is lent for this graph). A failed copy is kept in b.err.
func (b *builder[T]) bind(name string, t *tensor.Dense, weight bool) *G.Node {
	var v G.Value = t
	if d := b.opt.Device; d != nil {
		var err error
		if weight {
			v, err = d.Weight(name, t)
		} else {
			v, err = d.Upload(t)
		}
		if err != nil {
			b.err = errors.Join(b.err, fmt.Errorf("model: %s to the device: %w", name, err))
			return G.NodeFromAny(b.g, t, G.WithName(name)) // the graph is refused before it runs
		}
	}
	return G.NodeFromAny(b.g, v, G.WithName(name))
}

// host returns a graph value in host memory: itself, or a copy from the device.
func (m *Graph) host(v G.Value) (G.Value, error) {
	if m.dev == nil {
		return v, nil
	}
	if _, ok := v.(tensor.Tensor); !ok { // a scalar: the device hands those to the host
		return v, nil
	}
	return m.dev.Download(v)
}

// hostDense is host for the tensor accessors: a device value that cannot come down is reported as nil.
func (m *Graph) hostDense(v G.Value) *tensor.Dense {
	h, err := m.host(v)
	if err != nil {
		return nil
	}
	return h.(*tensor.Dense)
}
