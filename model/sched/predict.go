package sched

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
)

// Prediction types of Config.PredictionType.
const (
	PredictEpsilon = "epsilon"
	PredictV       = "v_prediction"
)

// alphaBar is abar at a model timestep t, interpolated linearly between
// integer timesteps (sigma samplers use fractional ones) and clamped to
// the schedule.
func (s *Schedule) alphaBar(t float32) float64 {
	n := len(s.AlphasCumprod)
	f := math.Max(0, math.Min(float64(n-1), float64(t)))
	i := int(math.Floor(f))
	if i >= n-1 {
		return float64(s.AlphasCumprod[n-1])
	}
	w := f - float64(i)
	return (1-w)*float64(s.AlphasCumprod[i]) + w*float64(s.AlphasCumprod[i+1])
}

// perSample returns a [N, 1, 1, 1] tensor (rank of like) holding f(abar_t)
// for each element's timestep.
func (s *Schedule) perSample(e *gpu.Engine, like *gpu.Tensor, t []float32, f func(ab float64) float64) *gpu.Tensor {
	v := make([]float32, len(t))
	for i, ti := range t {
		v[i] = float32(f(s.alphaBar(ti)))
	}
	shape := make([]int, len(like.Shape()))
	for i := range shape {
		shape[i] = 1
	}
	shape[0] = len(t)
	return e.FromSlice(v, shape...)
}

// EpsFromOutput turns the U-Net's output out for the model input x (both
// [N, C, h, w], x being x_t of the variance-preserving process) at
// timesteps t (one per element, or one for all) into the noise prediction
// the samplers use: out itself for epsilon prediction, and for
// v-prediction (v = sqrt(abar) eps - sqrt(1 - abar) x_0)
// eps = sqrt(1 - abar) x_t + sqrt(abar) v. Recorded on the tape.
func (s *Schedule) EpsFromOutput(e *gpu.Engine, out, x *gpu.Tensor, t []float32) *gpu.Tensor {
	if s.PredictionType != PredictV {
		return out
	}
	n := x.Dim(0)
	if len(t) == 1 && n > 1 {
		t = repeat(t[0], n)
	}
	a := s.perSample(e, x, t, func(ab float64) float64 { return math.Sqrt(1 - ab) })
	b := s.perSample(e, x, t, func(ab float64) float64 { return math.Sqrt(ab) })
	return e.Add(e.Mul(x, a), e.Mul(out, b))
}

// Target is the training target of the U-Net for x_0 and the noise eps
// ([N, ...]) at integer timesteps t: eps for epsilon prediction,
// sqrt(abar) eps - sqrt(1 - abar) x_0 for v-prediction. Recorded on the
// tape.
func (s *Schedule) Target(e *gpu.Engine, x0, eps *gpu.Tensor, t []int) (*gpu.Tensor, error) {
	if s.PredictionType != PredictV {
		return eps, nil
	}
	if len(t) != x0.Dim(0) {
		return nil, fmt.Errorf("sched: %d timesteps for a batch of %d", len(t), x0.Dim(0))
	}
	tf := make([]float32, len(t))
	for i, v := range t {
		tf[i] = float32(v)
	}
	a := s.perSample(e, x0, tf, func(ab float64) float64 { return math.Sqrt(ab) })
	b := s.perSample(e, x0, tf, func(ab float64) float64 { return -math.Sqrt(1 - ab) })
	return e.Add(e.Mul(eps, a), e.Mul(x0, b)), nil
}

func repeat(v float32, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}
