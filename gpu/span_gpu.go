//go:build gpu

package gpu

import (
	"time"

	"gorgonia.org/cu"
)

// span times the device's share of training steps with two events on its stream: the first records
// where a step's first operation enters the stream, the second where its update ends. The events time the
// stream's work between them, host gaps included, not the host's work before the first operation nor the
// inputs a graph is built with, which go up before it runs: the step with its data on the device. Whether
// a step is open is Device.stepping.
type span struct{ start, end cu.Event }

// newSpan makes the span's events (on the device's thread).
func newSpan() (*span, error) {
	start, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		return nil, err
	}
	end, err := cu.MakeEvent(cu.DefaultEvent)
	if err != nil {
		cu.DestroyEvent(&start)
		return nil, err
	}
	return &span{start: start, end: end}, nil
}

// finish records the step's end on stream, waits for it, and returns the time since its start.
func (s *span) finish(stream cu.Stream) (time.Duration, error) {
	if err := s.end.Record(stream); err != nil {
		return 0, err
	}
	if err := s.end.Synchronize(); err != nil {
		return 0, err
	}
	ms, err := s.start.Elapsed(s.end)
	return time.Duration(ms * float64(time.Millisecond)), err
}

// destroy frees the events.
func (s *span) destroy() error {
	err := cu.DestroyEvent(&s.start)
	if derr := cu.DestroyEvent(&s.end); err == nil {
		err = derr
	}
	return err
}

// beginStep notes that a training step's work enters the stream (Graphs.Run calls it): the first call
// after an update records the step's start; the others return at once, without the device's thread.
func (d *Device) beginStep() error {
	if d.stepping.Swap(true) {
		return nil
	}
	return d.do(func() error { return d.steps.start.Record(d.stream) })
}

// endStep ends a training step on the device (Training.Update calls it after the update's launches): it
// waits for the device and adds the step's time to Usage.StepTime (a step that never began just waits).
func (d *Device) endStep() error {
	if !d.stepping.Swap(false) {
		return d.Synchronize()
	}
	return d.do(func() error {
		t, err := d.steps.finish(d.stream)
		d.usage.StepTime += t
		return err
	})
}

// abandonStep forgets a step that ends without an update (skipped): its time is not counted, and the next
// step records its own start.
func (d *Device) abandonStep() { d.stepping.Store(false) }
