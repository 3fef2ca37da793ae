package gpu

import "time"

// Usage is what a device's work has taken so far: the most memory its buffers held at once, and the
// floating-point operations of its matrix products (2·m·n·k each) by the arithmetic they ran in: float32,
// and on the tensor cores TF32 and bfloat16.
//
// StepTime is the device's time in training steps, timed by events on its stream: each from the first
// operation after the last update (the inputs its graph was built with already on the device) to the end
// of the next update. UploadBytes counts what the host put in
// the device's memory.
type Usage struct {
	PeakBytes    int64
	FLOPsFloat32 int64
	FLOPsTF32    int64
	FLOPsBF16    int64
	StepTime     time.Duration
	UploadBytes  int64
}

// Since is u's work since earlier's (the peak stays u's).
func (u Usage) Since(earlier Usage) Usage {
	return Usage{PeakBytes: u.PeakBytes, FLOPsFloat32: u.FLOPsFloat32 - earlier.FLOPsFloat32,
		FLOPsTF32: u.FLOPsTF32 - earlier.FLOPsTF32, FLOPsBF16: u.FLOPsBF16 - earlier.FLOPsBF16,
		StepTime: u.StepTime - earlier.StepTime, UploadBytes: u.UploadBytes - earlier.UploadBytes}
}

// FLOPs are the products' operations, all precisions together.
func (u Usage) FLOPs() int64 { return u.FLOPsFloat32 + u.FLOPsTF32 + u.FLOPsBF16 }
