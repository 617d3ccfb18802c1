// Package generate turns Stable Diffusion 1.x components into images:
// classifier-free-guided sampling over the engine (with the trajectory DDPO
// training replays), seeded portable noise, text-to-image generation, and
// PNG files that carry their generation parameters.
//
// The components are passed explicitly (tokenizer, text model, U-Net, VAE,
// schedule), so any loader can feed them.
package generate

import (
	"context"
	"fmt"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

// Guide predicts guided noise with classifier-free guidance, as diffusers'
// StableDiffusionPipeline does: the U-Net runs once on the batch
// [x; x] with the text conditioning [uncond; cond], and
// eps = eps_u + scale (eps_c - eps_u). With scale <= 1 guidance is off and
// the U-Net runs on cond alone (diffusers' do_classifier_free_guidance).
type Guide struct {
	UNet  *sd.UNet
	Scale float32
	// Schedule, when set, converts the U-Net's output to a noise
	// prediction (sched.Schedule.EpsFromOutput: v-prediction models);
	// nil means the output is eps.
	Schedule *sched.Schedule
	ctx      *gpu.Tensor // [2N, L, D] = [uncond; cond], or [N, L, D] = cond
	n        int
}

// NewGuide prepares guidance for a batch of N latents with conditioning
// cond and uncond ([N, L, D] each; uncond is unused when scale <= 1). The
// guide holds one tensor until Release.
func NewGuide(u *sd.UNet, cond, uncond *gpu.Tensor, scale float32) (*Guide, error) {
	e := u.W.E
	if cond == nil || len(cond.Shape()) != 3 {
		return nil, fmt.Errorf("generate: conditioning must be [N, L, D], got %v", cond)
	}
	if d := cond.Dim(2); d != u.Cfg.CrossAttentionDim {
		return nil, fmt.Errorf("generate: conditioning width %d, the U-Net attends to %d", d, u.Cfg.CrossAttentionDim)
	}
	g := &Guide{UNet: u, Scale: scale, n: cond.Dim(0)}
	if scale <= 1 {
		e.Outside(func() { g.ctx = cond.Detach() })
		return g, nil
	}
	if uncond == nil || !equalShape(uncond.Shape(), cond.Shape()) {
		return nil, fmt.Errorf("generate: unconditional embedding %v does not match the conditioning %v", uncond, cond.Shape())
	}
	e.Outside(func() { g.ctx = e.Concat(0, uncond, cond) })
	return g, nil
}

// Release frees the guide's conditioning batch.
func (g *Guide) Release() { g.ctx.Release() }

// Eps returns the guided noise prediction [N, C, h, w] for the model input
// x [N, C, h, w] at (possibly fractional) model timestep t.
func (g *Guide) Eps(x *gpu.Tensor, t float32) *gpu.Tensor {
	e := g.UNet.W.E
	s := e.Scope()
	var out *gpu.Tensor
	if g.Scale <= 1 {
		out = g.UNet.Forward(x, e.Full(t, g.n), g.ctx)
	} else {
		raw := g.UNet.Forward(e.Concat(0, x, x), e.Full(t, 2*g.n), g.ctx) // [2N, C, h, w]
		p := e.Split(raw, 0, g.n, g.n)
		eu, ec := p[0], p[1]
		out = e.Add(eu, e.Scale(e.Sub(ec, eu), g.Scale))
	}
	if g.Schedule != nil {
		out = g.Schedule.EpsFromOutput(e, out, x, []float32{t})
	}
	s.Close(out)
	return out
}

// Trajectory records a sampling run for policy-gradient training (DDPO):
// every latent from x_T to x_0 and, for stochastic DDIM steps, the
// log-probability of each step's sample under the sampling policy. Values
// live on the CPU so a batch of trajectories holds no GPU memory.
type Trajectory struct {
	Shape     []int       // [N, C, h, w] of each latent
	Timesteps []float32   // K model timesteps, descending
	Latents   [][]float32 // K+1 latents: [0] = x_T, [k+1] = after step k (N*C*h*w values each)
	// LogProbs[k][i] is log p(Latents[k+1][i] | Latents[k][i]) of batch
	// element i: DDPO's per-element MEAN over (C, h, w) of the Gaussian
	// log-density (sched.Step.LogProb). Nil unless the sampler is DDIM with
	// eta > 0.
	LogProbs [][]float32
	// Eta is the DDIM eta of the run (0 for other samplers).
	Eta float32
	// Pred0[k] is the model's prediction of x_0 at step k,
	// (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t) from Latents[k] (N*C*h*w
	// values); nil unless SampleConfig.RecordPred0 with a DDIM sampler.
	Pred0 [][]float32
}

// SampleConfig describes one sampling run.
type SampleConfig struct {
	// Sampler serves one run (multistep samplers keep state between steps).
	Sampler sched.Sampler
	Guide   *Guide
	// Noise returns the standard normal z of step k (N*C*h*w values, NCHW)
	// for stochastic samplers; it is not called otherwise.
	Noise func(k int) []float32
	// Record keeps the trajectory (one readback per step).
	Record bool
	// RecordPred0 also keeps each DDIM step's x_0 prediction
	// (Trajectory.Pred0; one more readback per step). It needs Record.
	RecordPred0 bool
	// Progress, if set, is called after each step with the number of
	// steps done.
	Progress func(done, total int)
}

// Sample runs the sampler from x_T (xT [N, C, h, w], already multiplied by
// the sampler's InitScale) to x_0 and returns x_0 (a new tensor; xT is left
// alone) and, with Record, the trajectory. ctx is checked before every
// step; a cancelled run returns ctx.Err(). Runs without recording
// gradients.
func Sample(ctx context.Context, xT *gpu.Tensor, c SampleConfig) (*gpu.Tensor, *Trajectory, error) {
	if c.Sampler == nil || c.Guide == nil {
		return nil, nil, fmt.Errorf("generate: Sample needs a sampler and a guide")
	}
	if sh, u := xT.Shape(), c.Guide.UNet.Cfg; len(sh) != 4 || sh[1] != u.InChannels || sh[2]%8 != 0 || sh[3]%8 != 0 || sh[2] == 0 || sh[3] == 0 {
		return nil, nil, fmt.Errorf("generate: latents %v: want [N, %d, h, w] with h and w positive multiples of 8", sh, u.InChannels)
	}
	if xT.Dim(0) != c.Guide.n {
		return nil, nil, fmt.Errorf("generate: %d latents for a conditioning batch of %d", xT.Dim(0), c.Guide.n)
	}
	if c.Sampler.Stochastic() && c.Noise == nil {
		return nil, nil, fmt.Errorf("generate: the sampler is stochastic and no noise source was given")
	}
	e := c.Guide.UNet.W.E
	ts := c.Sampler.Timesteps()
	ddim, _ := c.Sampler.(*sched.DDIM)
	var tr *Trajectory
	record := func(x *gpu.Tensor) error {
		v, err := x.Read()
		if err == nil {
			tr.Latents = append(tr.Latents, v)
		}
		return err
	}
	if c.Record {
		tr = &Trajectory{Shape: append([]int(nil), xT.Shape()...), Timesteps: ts}
		if ddim != nil {
			tr.Eta = ddim.Eta
		}
		if err := record(xT); err != nil {
			return nil, nil, err
		}
	}
	x := xT
	release := func() {
		if x != xT {
			x.Release()
		}
	}
	var runErr error
	e.NoGrad(func() {
		for k, t := range ts {
			if err := ctx.Err(); err != nil {
				runErr = err
				return
			}
			next, lp, p0, err := step(e, c, ddim, k, t, x)
			if err != nil {
				runErr = err
				return
			}
			if tr != nil && p0 != nil {
				tr.Pred0 = append(tr.Pred0, p0)
			}
			release()
			x = next
			if tr != nil {
				if err := record(x); err != nil {
					runErr = err
					return
				}
				if lp != nil {
					tr.LogProbs = append(tr.LogProbs, lp)
				}
			}
			if err := e.Err(); err != nil {
				runErr = err
				return
			}
			if c.Progress != nil {
				c.Progress(k+1, len(ts))
			}
		}
	})
	if runErr != nil {
		release()
		return nil, nil, runErr
	}
	if x == xT {
		x = e.Copy(xT)
	}
	return x, tr, nil
}

// step runs sampling step k at model timestep t from x and returns the next
// latent, its log-probability for a stochastic DDIM step when recording,
// and the x_0 prediction with RecordPred0.
func step(e *gpu.Engine, c SampleConfig, ddim *sched.DDIM, k int, t float32, x *gpu.Tensor) (*gpu.Tensor, []float32, []float32, error) {
	s := e.Scope()
	in := x
	if sc := c.Sampler.InputScale(k); sc != 1 {
		in = e.Scale(x, sc)
	}
	eps := c.Guide.Eps(in, t) // [N, C, h, w]
	var z *gpu.Tensor
	if c.Sampler.Stochastic() {
		zv := c.Noise(k)
		if len(zv) != x.Len() {
			s.Close()
			return nil, nil, nil, fmt.Errorf("generate: step %d noise has %d values, the latents %d", k, len(zv), x.Len())
		}
		var err error
		if z, err = e.Upload(gpu.Activations, zv, x.Shape()...); err != nil {
			s.Close()
			return nil, nil, nil, err
		}
	}
	var p0v []float32
	if ddim != nil && c.Record && c.RecordPred0 {
		st := ddim.Coeffs(k)
		p0 := e.Sub(e.Scale(x, 1/st.SqrtAbarT), e.Scale(eps, st.SqrtOneMT/st.SqrtAbarT))
		var err error
		if p0v, err = p0.Read(); err != nil {
			s.Close()
			return nil, nil, nil, err
		}
	}
	var next, lp *gpu.Tensor
	if ddim != nil && c.Record && z != nil {
		st := ddim.Coeffs(k)
		mean := st.Mean(e, x, eps)
		next = st.Sample(e, mean, z)
		if st.Sigma > 0 {
			lp = st.LogProb(e, next, mean) // [N]
		}
	} else {
		next = c.Sampler.Step(e, k, x, eps, z)
	}
	var lpv []float32
	if lp != nil {
		var err error
		if lpv, err = lp.Read(); err != nil {
			s.Close()
			return nil, nil, nil, err
		}
	}
	s.Close(next)
	return next, lpv, p0v, nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
