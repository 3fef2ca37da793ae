//go:build !linux

package gemm

import "time"

// threadCPU is not available here: benchmarks report wall-clock throughput only.
func threadCPU() (since func() time.Duration, ok bool) { return nil, false }
