package gpu

import "time"

// WaitIdle submits all recorded work and waits until the device has
// finished it, polling without blocking. Unlike Sync it has no time limit:
// wgpu 0.17's blocking wait (Sync, and the wait inside a readback) gives up
// after 5 s and then treats the submission as complete, so a longer batch
// (on lavapipe: a 2048^3 product on a busy machine, or several cold shader
// compiles) reads stale data and later crashes the driver when freed
// resources are still in use. Benchmarks and other long runs wait with
// WaitIdle.
func (e *Engine) WaitIdle() error {
	if err := e.rec.flush(); err != nil {
		return err
	}
	for pause := time.Microsecond; !e.dev.Poll(false, nil); pause = min(2*pause, time.Millisecond) {
		if e.lost != nil {
			return e.lost
		}
		time.Sleep(pause)
	}
	return e.lost
}
