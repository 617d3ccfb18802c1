package training

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/model/generate"
)

// Stream is a counter-based random stream: every value is a function of
// (Seed, Step, Purpose, index), so a run resumed at step k draws exactly
// what the uninterrupted run drew at step k, without saved generator state.
// Purpose separates independent uses within a step (noise, timesteps,
// flips, ...).
type Stream struct {
	Seed    uint64
	Step    uint64
	Purpose uint32
	n       uint32 // values drawn so far
}

// NewStream returns the stream for one step and purpose.
func NewStream(seed uint64, step int, purpose uint32) *Stream {
	return &Stream{Seed: seed, Step: uint64(step), Purpose: purpose}
}

// Uint32 returns the next 32 random bits.
func (s *Stream) Uint32() uint32 {
	key := [2]uint32{uint32(s.Seed), uint32(s.Seed >> 32)}
	ctr := [4]uint32{s.n, s.Purpose, uint32(s.Step), uint32(s.Step >> 32)}
	s.n++
	return generate.Philox4x32(ctr, key)[0]
}

// Float64 returns a uniform value in [0, 1).
func (s *Stream) Float64() float64 {
	hi := uint64(s.Uint32()) << 21
	lo := uint64(s.Uint32()) >> 11
	return float64(hi|lo) / (1 << 53)
}

// Intn returns a uniform integer in [0, n); n must be positive.
func (s *Stream) Intn(n int) int {
	if n <= 0 {
		panic("training: Stream.Intn needs n > 0")
	}
	return int(s.Float64() * float64(n))
}

// Perm returns a uniform random permutation of 0..n-1 (Fisher-Yates).
func (s *Stream) Perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := s.Intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// Normal fills out with standard normal values, the same as
// generate.Noise for this stream's (seed, step, purpose): the stream index
// mixes the step and the purpose.
func (s *Stream) Normal(out []float32) {
	generate.Noise(s.Seed^0x9e3779b97f4a7c15, s.Step<<20|uint64(s.Purpose), out)
}

// CheckFinite returns an error naming what when v is NaN or infinite.
func CheckFinite(what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return &NotFiniteError{What: what, Value: v}
	}
	return nil
}

// NotFiniteError reports a NaN or infinite training quantity; the trainer
// stops and keeps the last good checkpoint.
type NotFiniteError struct {
	What  string
	Value float64
	Step  int
}

func (e *NotFiniteError) Error() string {
	at := ""
	if e.Step > 0 {
		at = fmt.Sprintf(" at step %d", e.Step)
	}
	return fmt.Sprintf("training: %s is %v%s; the run stopped and the last good checkpoint is kept", e.What, e.Value, at)
}
