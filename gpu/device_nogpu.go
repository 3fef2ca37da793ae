//go:build !gpu

package gpu

// Device is a GPU; without the gpu tag there is none.
type Device struct{}

// Open reports ErrNoCUDA: this build has no CUDA.
func Open(ordinal int, tf32 bool) (*Device, error) { return nil, ErrNoCUDA }

// Close does nothing.
func (d *Device) Close() error { return nil }
