//go:build !amd64 || purego

package optim

// adamwBlocks does nothing without the amd64 vector kernel: the Go loop updates every element.
func adamwBlocks(w, g, m, v []float32, k *adamwConsts[float32]) int { return 0 }
