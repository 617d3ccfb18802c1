package training

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Status is a snapshot of a long job's progress.
type Status struct {
	Step, Total int           // steps done (of this job, counting resumed ones) and planned
	Elapsed     time.Duration // wall time since the meter started (this process only)
	Rate        float64       // steps per second over this process's steps; 0 before the first
	ETA         time.Duration // estimated time to Total at Rate; 0 when unknown
	Metrics     map[string]float64
}

// Meter turns step counts into rate and ETA. Steps done before the meter
// started (a resumed run) count towards Step but not towards the rate.
type Meter struct {
	start     time.Time
	startStep int
	total     int
	now       func() time.Time
}

// NewMeter starts a meter for a job of total steps, of which startStep are
// already done.
func NewMeter(startStep, total int) *Meter {
	return &Meter{start: time.Now(), startStep: startStep, total: total, now: time.Now}
}

// Update returns the status after step steps, with optional metrics (kept,
// not copied).
func (m *Meter) Update(step int, metrics map[string]float64) Status {
	s := Status{Step: step, Total: m.total, Elapsed: m.now().Sub(m.start), Metrics: metrics}
	if done := step - m.startStep; done > 0 && s.Elapsed > 0 {
		s.Rate = float64(done) / s.Elapsed.Seconds()
		if left := m.total - step; left > 0 {
			s.ETA = time.Duration(float64(left) / s.Rate * float64(time.Second))
		}
	}
	return s
}

// String formats the status as one progress line:
//
//	step 120/800 (15%)  loss 0.1234  2.31 it/s  ETA 4m54s
//
// Metrics are printed in name order; rates below one step per second are
// shown as seconds per step.
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d/%d", s.Step, s.Total)
	if s.Total > 0 {
		fmt.Fprintf(&b, " (%d%%)", 100*s.Step/s.Total)
	}
	names := make([]string, 0, len(s.Metrics))
	for k := range s.Metrics {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(&b, "  %s %.4g", k, s.Metrics[k])
	}
	switch {
	case s.Rate >= 1:
		fmt.Fprintf(&b, "  %.2f it/s", s.Rate)
	case s.Rate > 0:
		fmt.Fprintf(&b, "  %.2f s/it", 1/s.Rate)
	}
	if s.ETA > 0 {
		fmt.Fprintf(&b, "  ETA %s", s.ETA.Round(time.Second))
	}
	return b.String()
}
