package sched

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
)

// Sampler turns a noise prediction into the next latent. A generation loop
// asks for Timesteps, scales the model input with InputScale, and calls
// Step once per timestep in order.
type Sampler interface {
	// Timesteps are the model timesteps, descending.
	Timesteps() []float32
	// InitScale multiplies standard normal noise to make x_T.
	InitScale() float32
	// InputScale multiplies x before it is fed to the model at step k.
	InputScale(k int) float32
	// Step returns x at step k+1 from x at step k and the (guided) noise
	// prediction eps. z is standard normal noise for stochastic samplers
	// (nil otherwise).
	Step(e *gpu.Engine, k int, x, eps, z *gpu.Tensor) *gpu.Tensor
	// Stochastic reports whether Step uses z.
	Stochastic() bool
}

// NewSampler returns a sampler by name: "ddim" (eta as given), "euler" or
// "dpm++2m".
func (s *Schedule) NewSampler(name string, steps int, eta float32) (Sampler, error) {
	if steps < 1 || steps > s.NumTrainTimesteps {
		return nil, fmt.Errorf("sched: %d steps outside [1, %d]", steps, s.NumTrainTimesteps)
	}
	switch name {
	case "ddim":
		return &DDIM{s: s, steps: steps, Eta: eta, ts: s.Timesteps(steps)}, nil
	case "euler":
		return newSigmaSampler(s, steps, false), nil
	case "dpm++2m", "dpmsolver++":
		return newSigmaSampler(s, steps, true), nil
	}
	return nil, fmt.Errorf("sched: unknown sampler %q (ddim, euler, dpm++2m)", name)
}

// DDIM is diffusers' DDIMScheduler with eta (eta = 1: DDPO's sampler).
type DDIM struct {
	s     *Schedule
	steps int
	Eta   float32
	ts    []int
}

func (d *DDIM) Timesteps() []float32 {
	out := make([]float32, len(d.ts))
	for i, t := range d.ts {
		out[i] = float32(t)
	}
	return out
}
func (d *DDIM) InitScale() float32     { return 1 }
func (d *DDIM) InputScale(int) float32 { return 1 }
func (d *DDIM) Stochastic() bool       { return d.Eta > 0 }

// Coeffs returns step k's DDIM coefficients.
func (d *DDIM) Coeffs(k int) Step { return Step{d.s.DDIMStep(d.ts[k], d.steps, d.Eta)} }

func (d *DDIM) Step(e *gpu.Engine, k int, x, eps, z *gpu.Tensor) *gpu.Tensor {
	st := d.Coeffs(k)
	mean := st.Mean(e, x, eps)
	if st.Sigma == 0 || z == nil {
		return mean
	}
	return st.Sample(e, mean, z)
}

// sigmaSampler covers the Karras-style samplers over sigma = sqrt((1 -
// abar) / abar): Euler (first order) and DPM-Solver++(2M) (second-order
// multistep in log-SNR, data prediction, midpoint update, first order at
// the last step), both with "linspace" timesteps as diffusers' defaults.
type sigmaSampler struct {
	ts     []float32 // model timesteps (interpolated), descending
	sigmas []float64 // len(ts)+1, last 0
	dpm    bool
	prevX0 *gpu.Tensor
}

func newSigmaSampler(s *Schedule, steps int, dpm bool) *sigmaSampler {
	n := s.NumTrainTimesteps
	logSig := make([]float64, n)
	for i, a := range s.AlphasCumprod {
		logSig[i] = 0.5 * math.Log((1-float64(a))/float64(a))
	}
	ss := &sigmaSampler{dpm: dpm}
	for i := 0; i < steps; i++ {
		t := float64(n-1) * (1 - float64(i)/float64(steps)) // linspace(n-1, 0, steps+1)[:-1]
		if steps == 1 {
			t = float64(n - 1)
		}
		lo := int(math.Floor(t))
		hi := min(lo+1, n-1)
		w := t - float64(lo)
		ls := (1-w)*logSig[lo] + w*logSig[hi]
		ss.ts = append(ss.ts, float32(t))
		ss.sigmas = append(ss.sigmas, math.Exp(ls))
	}
	ss.sigmas = append(ss.sigmas, 0)
	return ss
}

func (q *sigmaSampler) Timesteps() []float32 { return q.ts }
func (q *sigmaSampler) InitScale() float32 {
	return float32(math.Sqrt(q.sigmas[0]*q.sigmas[0] + 1))
}
func (q *sigmaSampler) InputScale(k int) float32 {
	return float32(1 / math.Sqrt(q.sigmas[k]*q.sigmas[k]+1))
}
func (q *sigmaSampler) Stochastic() bool { return false }

// Step works on the unscaled x of the sigma parameterisation
// (x = x0 + sigma eps), where the data prediction is x0 = x - sigma eps.
func (q *sigmaSampler) Step(e *gpu.Engine, k int, x, eps, _ *gpu.Tensor) *gpu.Tensor {
	sg, next := q.sigmas[k], q.sigmas[k+1]
	x0 := e.Sub(x, e.Scale(eps, float32(sg))) // data prediction
	if !q.dpm {
		// Euler: x + (next - sg) * (x - x0) / sg = x0 + next * eps.
		out := e.Add(x0, e.Scale(eps, float32(next)))
		return out
	}
	defer func() {
		if q.prevX0 != nil {
			q.prevX0.Release()
			q.prevX0 = nil
		}
		if k < len(q.ts)-1 {
			// The kept view belongs to no scope, so a caller may run each
			// step in a scope of its own; the last step keeps nothing.
			e.Outside(func() { q.prevX0 = x0.Detach() })
		}
	}()
	if next == 0 {
		return e.Copy(x0) // the last step lands on the data prediction
	}
	// In terms of alpha = 1/sqrt(1+sigma^2), s_t = sigma alpha and
	// lambda = -log sigma; the scaled x is alpha x.
	lam := func(s float64) float64 { return -math.Log(s) }
	h := lam(next) - lam(sg)
	// x_next (unscaled) = (next/sg) x - (e^{-h} - 1) D, with D the data
	// prediction (first order) or its 2M extrapolation.
	d := x0
	if q.prevX0 != nil && k > 0 && q.sigmas[k+1] > 0 {
		h0 := lam(sg) - lam(q.sigmas[k-1])
		r := h0 / h
		// D = x0 + (x0 - prev)/(2r)
		d = e.Add(e.Scale(x0, float32(1+1/(2*r))), e.Scale(q.prevX0, float32(-1/(2*r))))
	}
	return e.Sub(e.Scale(x, float32(next/sg)), e.Scale(d, float32(math.Expm1(-h))))
}
