//go:build !amd64 || purego

package ops

// ropeRowVector does nothing without the amd64 vector kernel: ropeRow loops over the heads with RopeRow.
func ropeRowVector[T Float](y, x, cos, sin []T, dh int, transpose bool) bool { return false }
