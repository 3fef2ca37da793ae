//go:build gpu

package train

import (
	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/gpu"
	"github.com/flextrain/flextrain/optim"
)

// cudaBuilt: this build runs GPUs.
const cudaBuilt = true

// openAccelerator opens the GPU of d and a training run on it over params.
func openAccelerator(d config.Device, tf32 bool, params []optim.Param[float32]) (accelerator, error) {
	dev, err := gpu.Open(d.Ordinal, tf32)
	if err != nil {
		return nil, err
	}
	return &gpuRun{Training: dev.Training(params), dev: dev}, nil
}

// gpuRun is a training run on a device it owns: Close closes both.
type gpuRun struct {
	*gpu.Training
	dev *gpu.Device
}

func (r *gpuRun) Close() error {
	err := r.Training.Close()
	if cerr := r.dev.Close(); err == nil {
		err = cerr
	}
	return err
}

// Memory is the GPU's memory in bytes.
func (r *gpuRun) Memory() (int64, error) { return r.dev.Memory() }

// Usage is the GPU's work so far: its peak memory and its products' operations.
func (r *gpuRun) Usage() gpu.Usage { return r.dev.Usage() }
