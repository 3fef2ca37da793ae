//go:build !gpu

package train

import (
	"github.com/flextrain/flextrain/config"
	"github.com/flextrain/flextrain/gpu"
	"github.com/flextrain/flextrain/optim"
)

// cudaBuilt: this build has no CUDA.
const cudaBuilt = false

// openAccelerator fails: this build has no CUDA.
func openAccelerator(config.Device, bool, []optim.Param[float32]) (accelerator, error) {
	return nil, gpu.ErrNoCUDA
}
