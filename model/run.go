package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/flextrain/flextrain/model/ops"
)

// Run executes the graph: forward, and backward when weights are trainable.
func (m *Graph) Run() error {
	defer m.vm.Reset()
	if err := m.vm.RunAll(); err != nil {
		return fmt.Errorf("model: run: %w", err)
	}
	if m.keep != nil {
		m.keep()
	}
	return nil
}

// Close releases the graph's machine and hands its buffers back to Options.Arena.
func (m *Graph) Close() error {
	err := m.vm.Close()
	m.release()
	return err
}

// release detaches the graph from its arena and device and returns every buffer lent to it.
func (m *Graph) release() {
	ops.Detach(m.g)
	m.mem.Release()
	if m.dev != nil {
		ops.DetachDevice(m.g)
		m.dev.Release()
	}
}

// Loss is the training loss of the last Run (0 in Infer mode).
func (m *Graph) Loss() float64 {
	if m.loss == nil || m.loss.Value() == nil {
		return 0
	}
	return scalar(m.loss.Value())
}

func scalar(v G.Value) float64 {
	switch x := v.Data().(type) {
	case float32:
		return float64(x)
	case float64:
		return x
	case []float32:
		return float64(x[0])
	case []float64:
		return x[0]
	}
	return 0
}

// Grads returns the gradient of every trainable weight after a Run, by name: on a device, the device's
// values (an optimizer there reads them where they are).
func (m *Graph) Grads() map[string]*tensor.Dense {
	out := make(map[string]*tensor.Dense, len(m.grads))
	for name, n := range m.grads {
		if d, ok := n.Value().(*tensor.Dense); ok {
			out[name] = d
		}
	}
	return out
}

// Logits returns the logits of the last Run: [B·N, V] (rows past a sample's length are padding), or in
// training [len(LogitRows()), V], the rows the loss reads only.
// On a device they are downloaded (nil if that fails), as are the features below.
func (m *Graph) Logits() *tensor.Dense { return m.hostDense(m.logits.Value()) }

// LogitRows returns, when Logits holds some rows only, the row of [B·N] each of its rows is; nil when it
// holds them all.
func (m *Graph) LogitRows() []int { return m.lossRows }

// Shape returns the assembled batch size and length (B, N).
func (m *Graph) Shape() (int, int) { return m.lay.B, m.lay.N }

// Lens returns the real length of every assembled sample.
func (m *Graph) Lens() []int { return m.lay.lens }

// HRRows returns, per sample, the rows that see HR tokens.
func (m *Graph) HRRows() [][]int { return m.rows }

// LRFeatures returns the projected LR features [K·n, D] of the image samples, in batch order (nil without
// images, or when the frozen front came from the feature cache).
func (m *Graph) LRFeatures() *tensor.Dense {
	if m.lr == nil {
		return nil
	}
	return m.hostDense(m.lr.Value())
}

// HRFeatures returns the HR features [B·M, D] (zeros for samples without HR rows).
func (m *Graph) HRFeatures() *tensor.Dense { return m.hostDense(m.hd.Value()) }

// ImageIndex returns, per sample, its index among the image samples, or -1.
func (m *Graph) ImageIndex() []int { return m.lay.imageIdx }

// Selection returns the HR tokens each HR row of each sample attended to in FlexAttention layer l during the
// last Run: [sample][HR row index][]token, aligned with HRRows (rows whose selection was empty have none).
func (m *Graph) Selection(l int) ([][][]int, error) {
	c, ok := m.cells[l]
	if !ok {
		return nil, fmt.Errorf("model: layer %d is not a FlexAttention layer", l)
	}
	_, _, zg, _ := m.cfg.Grid()
	grid := ops.CellGrid{G: m.cfg.Flex.SelectGrid, Zg: zg}
	nc := grid.G * grid.G
	v, err := m.host(c.Value())
	if err != nil {
		return nil, fmt.Errorf("model: layer %d's selection: %w", l, err)
	}
	cells := v.Data()
	flag := func(i int) bool {
		switch x := cells.(type) {
		case []float32:
			return x[i] != 0
		case []float64:
			return x[i] != 0
		}
		return false
	}
	out := make([][][]int, m.lay.B)
	for b, rows := range m.rows {
		for _, r := range rows {
			base := (b*m.lay.N + r) * nc
			out[b] = append(out[b], grid.Tokens(func(i int) bool { return flag(base + i) }))
		}
	}
	return out, nil
}

// SelectedFraction is the mean, over FlexAttention layers and HR rows, of the fraction of the M HR tokens a
// row attended to in the last Run (0 when no row saw HR tokens).
func (m *Graph) SelectedFraction() float64 {
	_, _, _, M := m.cfg.Grid()
	var sum float64
	rows := 0
	for l := range m.cells {
		sel, err := m.Selection(l)
		if err != nil {
			continue
		}
		for _, perRow := range sel {
			for _, toks := range perRow {
				sum += float64(len(toks)) / float64(M)
				rows++
			}
		}
	}
	if rows == 0 {
		return 0
	}
	return sum / float64(rows)
}
