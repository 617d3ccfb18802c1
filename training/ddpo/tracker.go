package ddpo

import (
	"fmt"
	"math"
	"sort"
)

// StatTracker normalises rewards per prompt into advantages, as
// ddpo-pytorch's PerPromptStatTracker does. Each prompt keeps a buffer of
// its last BufferSize rewards. Update appends a batch's rewards to their
// prompts' buffers first, then standardises each reward with its prompt's
// buffer mean and (population) standard deviation when the buffer holds at
// least MinCount rewards, and otherwise with the mean and standard
// deviation of the whole batch passed to Update; 1e-6 is added to the
// standard deviation in both cases.
//
// With Pooled set, rewards are centred the same way but all divided by
// one scale: the root mean square of the batch's centred rewards (the
// pooled within-prompt standard deviation). Per-prompt division turns the
// tiny differences of a prompt whose samples all score alike into
// advantages as large as those of a prompt whose samples really differ;
// pooling keeps such prompts' advantages near zero (the bias of
// per-question standardisation noted by Liu et al. 2025, "Dr. GRPO").
type StatTracker struct {
	BufferSize, MinCount int
	Pooled               bool
	buf                  map[string][]float64
}

// newTracker returns an empty tracker with c's buffer, minimum count and
// pooling.
func (c Config) newTracker() *StatTracker {
	s := NewStatTracker(c.StatBuffer, c.StatMinCount)
	s.Pooled = c.PooledStd
	return s
}

// NewStatTracker returns an empty tracker.
func NewStatTracker(bufferSize, minCount int) *StatTracker {
	return &StatTracker{BufferSize: bufferSize, MinCount: minCount, buf: map[string][]float64{}}
}

// Update records rewards[i] of prompts[i] and returns the advantages (not
// clipped). Prompts and rewards must have the same length.
func (s *StatTracker) Update(prompts []string, rewards []float64) ([]float64, error) {
	if len(prompts) != len(rewards) {
		return nil, fmt.Errorf("ddpo: %d prompts and %d rewards", len(prompts), len(rewards))
	}
	gm, gs := meanStd(rewards)
	byPrompt := map[string][]int{}
	var order []string
	for i, p := range prompts {
		if _, ok := byPrompt[p]; !ok {
			order = append(order, p)
		}
		byPrompt[p] = append(byPrompt[p], i)
	}
	adv := make([]float64, len(rewards))
	sds := make([]float64, len(rewards))
	for _, p := range order {
		b := s.buf[p]
		for _, i := range byPrompt[p] {
			b = append(b, rewards[i])
		}
		if len(b) > s.BufferSize {
			b = append([]float64(nil), b[len(b)-s.BufferSize:]...)
		}
		s.buf[p] = b
		m, sd := gm, gs
		if len(b) >= s.MinCount {
			m, sd = meanStd(b)
		}
		for _, i := range byPrompt[p] {
			adv[i], sds[i] = rewards[i]-m, sd
		}
	}
	var pooled float64
	if s.Pooled {
		for _, a := range adv {
			pooled += a * a
		}
		pooled = math.Sqrt(pooled / float64(len(adv)))
	}
	for i := range adv {
		if s.Pooled {
			sds[i] = pooled
		}
		adv[i] /= sds[i] + 1e-6
	}
	return adv, nil
}

// Buffer returns a copy of prompt's buffer, oldest first.
func (s *StatTracker) Buffer(prompt string) []float64 {
	return append([]float64(nil), s.buf[prompt]...)
}

// TrackerState is a StatTracker's buffers, for checkpoints (JSON).
type TrackerState struct {
	BufferSize, MinCount int
	Pooled               bool        `json:",omitempty"`
	Prompts              []string    // sorted
	Buffers              [][]float64 // Buffers[i] of Prompts[i], oldest first
}

// State returns the tracker's buffers.
func (s *StatTracker) State() TrackerState {
	st := TrackerState{BufferSize: s.BufferSize, MinCount: s.MinCount, Pooled: s.Pooled}
	for p := range s.buf {
		st.Prompts = append(st.Prompts, p)
	}
	sort.Strings(st.Prompts)
	for _, p := range st.Prompts {
		st.Buffers = append(st.Buffers, s.Buffer(p))
	}
	return st
}

// SetState replaces the tracker's settings and buffers with st.
func (s *StatTracker) SetState(st TrackerState) error {
	if len(st.Prompts) != len(st.Buffers) {
		return fmt.Errorf("ddpo: tracker state has %d prompts and %d buffers", len(st.Prompts), len(st.Buffers))
	}
	s.BufferSize, s.MinCount, s.Pooled = st.BufferSize, st.MinCount, st.Pooled
	s.buf = map[string][]float64{}
	for i, p := range st.Prompts {
		s.buf[p] = append([]float64(nil), st.Buffers[i]...)
	}
	return nil
}

// meanStd returns the mean and population standard deviation of v
// (two-pass).
func meanStd(v []float64) (mean, std float64) {
	if len(v) == 0 {
		return 0, 0
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	var ss float64
	for _, x := range v {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(v)))
}
