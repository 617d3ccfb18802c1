package sched

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
)

// Step is one DDIM step on the GPU for a batch that shares timestep t.
// All results are engine tensors recorded on the tape, so a DDPO policy
// update can backpropagate from LogProb into the model's eps prediction.
type Step struct {
	DDIMCoeffs
}

// Mean returns A x_t + B eps: the mean of p(x_prev | x_t). x_t, eps
// [N, C, H, W].
func (s Step) Mean(e *gpu.Engine, xt, eps *gpu.Tensor) *gpu.Tensor {
	return e.Add(e.Scale(xt, s.A), e.Scale(eps, s.B))
}

// Sample returns mean + sigma z (z standard normal noise of mean's shape).
func (s Step) Sample(e *gpu.Engine, mean, z *gpu.Tensor) *gpu.Tensor {
	if s.Sigma == 0 || z == nil {
		return e.Copy(mean)
	}
	return e.Add(mean, e.Scale(z, s.Sigma))
}

// LogProb returns DDPO's per-sample log-probability of x_prev [N, C, H, W]
// under N(mean, sigma^2): the MEAN over (C, H, W) of
// -(x - mean)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi). Shape [N].
// sigma must be positive (eta > 0).
func (s Step) LogProb(e *gpu.Engine, prev, mean *gpu.Tensor) *gpu.Tensor {
	d := e.Sub(prev, mean)
	sq := e.Mean(e.Mul(d, d), 1, 2, 3) // [N]
	sg := float64(s.Sigma)
	c := e.Full(float32(-math.Log(sg)-LogProbConst), 1)
	return e.Add(e.Scale(sq, float32(-1/(2*sg*sg))), c)
}

// AddNoise is the DDPM forward process used in training (diffusers'
// add_noise): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, for x0, eps
// [N, ...] and one timestep per batch element. Recorded on the tape.
func (s *Schedule) AddNoise(e *gpu.Engine, x0, eps *gpu.Tensor, t []int) (*gpu.Tensor, error) {
	n := x0.Dim(0)
	if len(t) != n {
		return nil, fmt.Errorf("sched: %d timesteps for a batch of %d", len(t), n)
	}
	a := make([]float32, n)
	b := make([]float32, n)
	for i, ti := range t {
		if ti < 0 || ti >= s.NumTrainTimesteps {
			return nil, fmt.Errorf("sched: timestep %d outside [0, %d)", ti, s.NumTrainTimesteps)
		}
		ab := float64(s.AlphasCumprod[ti])
		a[i] = float32(math.Sqrt(ab))
		b[i] = float32(math.Sqrt(1 - ab))
	}
	shape := make([]int, len(x0.Shape()))
	for i := range shape {
		shape[i] = 1
	}
	shape[0] = n
	ta, tb := e.FromSlice(a, shape...), e.FromSlice(b, shape...)
	return e.Add(e.Mul(x0, ta), e.Mul(eps, tb)), nil
}
