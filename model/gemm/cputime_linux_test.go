package gemm

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU locks the calling goroutine to its thread and returns a function reporting the CPU
// time that thread used since; the machine is shared, so wall time alone overstates a run.
func threadCPU() (since func() time.Duration, ok bool) {
	runtime.LockOSThread()
	start, err := threadTime()
	if err != nil {
		return nil, false
	}
	return func() time.Duration {
		now, err := threadTime()
		if err != nil {
			return 0
		}
		return now - start
	}, true
}

func threadTime() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
