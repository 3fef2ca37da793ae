//go:build !race

package gemm

// raceEnabled is set under the race detector, whose sync.Pool drops items on purpose.
const raceEnabled = false
