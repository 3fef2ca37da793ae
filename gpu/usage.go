package gpu

// Usage is what a device's work has taken so far: the most memory its buffers held at once, and the
// floating-point operations of its matrix products (2·m·n·k each), in float32 products and in bfloat16
// ones (the tensor cores).
type Usage struct {
	PeakBytes    int64
	FLOPsFloat32 int64
	FLOPsBF16    int64
}

// Since is u's products since earlier's (the peak stays u's).
func (u Usage) Since(earlier Usage) Usage {
	return Usage{PeakBytes: u.PeakBytes, FLOPsFloat32: u.FLOPsFloat32 - earlier.FLOPsFloat32, FLOPsBF16: u.FLOPsBF16 - earlier.FLOPsBF16}
}
