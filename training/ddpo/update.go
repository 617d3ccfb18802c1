package ddpo

import (
	"context"
	"fmt"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/training"
)

// trainBatch is one training batch: its samples, their (clipped)
// advantages, the step indices each trains, and the U-Net conditioning.
type trainBatch struct {
	samples []*Sample
	adv     []float64
	steps   [][]int     // steps[i][j]: the j-th trained step of sample i
	ctx     *gpu.Tensor // [2B, L, D] with guidance, else [B, L, D]
}

// timestepStats are one trained timestep's figures.
type timestepStats struct {
	Surrogate
	NewLP []float32
}

// trainEpoch runs the inner epochs over samples with advantages adv,
// adding the training figures to st. tick is called after every trained
// timestep of a batch with running means.
func (t *Trainer) trainEpoch(ctx context.Context, ep int, samples []*Sample, adv []float64, st *EpochStats, tick func(map[string]float64)) error {
	cfg := t.cfg
	u := t.c.UNet
	saved := u.Checkpointing
	u.Checkpointing = !cfg.NoGradCheckpointing
	defer func() { u.Checkpointing = saved }()
	n, bs, nt, accum := len(samples), cfg.BatchSize, cfg.numTrain(), cfg.accum()
	scale := 1 / float64(nt*accum) // the update is the mean over timesteps and batches
	var evals int
	var gradNorms float64
	stop := func(err error) error {
		if nf, ok := err.(*training.NotFiniteError); ok {
			nf.Step = ep + 1
		}
		return err
	}
	for inner := 0; inner < cfg.InnerEpochs; inner++ {
		perm := training.NewStream(cfg.Seed, ep, purposeShuffle|uint32(inner)<<8).Perm(n)
		steps := cfg.trainedSteps(ep, inner, n) // by position in perm
		for b := 0; b < n/bs; b++ {
			chunks, err := t.batchChunks(samples, adv, perm[b*bs:(b+1)*bs], steps[b*bs:(b+1)*bs])
			if err != nil {
				return err
			}
			release := func() {
				for _, c := range chunks {
					c.ctx.Release()
				}
			}
			for j := 0; j < nt; j++ {
				if err := ctx.Err(); err != nil {
					release()
					return err
				}
				// The batch's figures: size-weighted means over its chunks.
				var sum Surrogate
				for _, c := range chunks {
					w := float64(len(c.samples)) / float64(bs)
					s, err := t.accumulate(c, j, scale*w)
					if err != nil {
						release()
						return stop(err)
					}
					sum.Loss += w * s.Loss
					sum.ApproxKL += w * s.ApproxKL
					sum.ClipFrac += w * s.ClipFrac
				}
				evals++
				st.Loss += (sum.Loss - st.Loss) / float64(evals)
				st.ApproxKL += (sum.ApproxKL - st.ApproxKL) / float64(evals)
				st.ClipFrac += (sum.ClipFrac - st.ClipFrac) / float64(evals)
				tick(map[string]float64{"loss": st.Loss, "approx_kl": st.ApproxKL, "clipfrac": st.ClipFrac})
			}
			release()
			if (b+1)%accum == 0 {
				gn, err := t.step()
				if err != nil {
					return stop(err)
				}
				st.Updates++
				gradNorms += gn
			}
		}
	}
	if st.Updates > 0 {
		st.GradNorm = gradNorms / float64(st.Updates)
	}
	return nil
}

// trainedSteps returns, for each of n samples of epoch ep's inner pass,
// the indices of the sampling steps it trains: numTrain distinct steps
// drawn from the first window() of each trajectory.
func (c Config) trainedSteps(ep, inner, n int) [][]int {
	ts := training.NewStream(c.Seed, ep, purposeTimesteps|uint32(inner)<<8)
	steps := make([][]int, n)
	w, nt := c.window(), c.numTrain()
	for p := range steps {
		steps[p] = ts.Perm(w)[:nt]
	}
	return steps
}

// batchChunks splits the training batch of samples idx (training steps
// steps[i] for idx[i]) into micro-batches of at most Config.MicroBatch,
// each with its U-Net conditioning.
func (t *Trainer) batchChunks(samples []*Sample, adv []float64, idx []int, steps [][]int) ([]*trainBatch, error) {
	cfg := t.cfg
	mb := cfg.MicroBatch
	if mb <= 0 || mb > len(idx) {
		mb = len(idx)
	}
	var out []*trainBatch
	for c0 := 0; c0 < len(idx); c0 += mb {
		c1 := min(len(idx), c0+mb)
		tb := &trainBatch{steps: steps[c0:c1]}
		prompts := make([]string, 0, c1-c0)
		for _, i := range idx[c0:c1] {
			tb.samples = append(tb.samples, samples[i])
			tb.adv = append(tb.adv, adv[i])
			prompts = append(prompts, cfg.Prompts[samples[i].Prompt])
		}
		cx, cond, uncond, err := t.conditioning(prompts)
		if err != nil {
			for _, c := range out {
				c.ctx.Release()
			}
			return nil, err
		}
		cond.Release()
		uncond.Release()
		tb.ctx = cx
		out = append(out, tb)
	}
	return out, nil
}

// logProbs runs the policy on trained step j of every sample of tb and
// returns the new log-probabilities [B] (recorded on the tape while
// gradients are enabled) and the old ones.
func (t *Trainer) logProbs(tb *trainBatch, j int) (*gpu.Tensor, []float32, error) {
	e, cfg := t.e, t.cfg
	lc, h, w := t.latentShape()
	per := lc * h * w
	bs := len(tb.samples)
	ts := t.c.Schedule.Timesteps(cfg.Steps)
	x := make([]float32, bs*per)
	prev := make([]float32, bs*per)
	tv := make([]float32, bs)
	old := make([]float32, bs)
	cs := make([]sched.DDIMCoeffs, bs)
	for i, s := range tb.samples {
		k := tb.steps[i][j]
		copy(x[i*per:], s.Latents[k])
		copy(prev[i*per:], s.Latents[k+1])
		tv[i] = float32(ts[k])
		old[i] = s.LogProbs[k]
		cs[i] = t.c.Schedule.DDIMStep(ts[k], cfg.Steps, cfg.Eta)
	}
	sc := e.Scope()
	xb := e.FromSlice(x, bs, lc, h, w)
	pb := e.FromSlice(prev, bs, lc, h, w)
	eps := t.c.Schedule.EpsFromOutput(t.e, GuidedEps(t.c.UNet, xb, tv, tb.ctx, cfg.Guidance), xb, tv)
	lp, err := StepLogProb(e, xb, eps, pb, cs)
	if err != nil {
		sc.Close()
		return nil, nil, err
	}
	sc.Close(lp)
	return lp, old, nil
}

// accumulate evaluates the clipped surrogate at trained step j of tb and
// adds scale times its gradient to the LoRA's gradients.
func (t *Trainer) accumulate(tb *trainBatch, j int, scale float64) (timestepStats, error) {
	e, cfg := t.e, t.cfg
	s := e.Scope()
	defer s.Close()
	lp, old, err := t.logProbs(tb, j)
	if err != nil {
		e.ResetTape()
		return timestepStats{}, err
	}
	nlp, err := lp.Read()
	if err != nil {
		e.ResetTape()
		return timestepStats{}, err
	}
	adv := tb.adv
	if tb.samples[0].StepAdv != nil {
		adv = make([]float64, len(tb.adv))
		for i, s := range tb.samples {
			adv[i] = s.StepAdv[tb.steps[i][j]]
		}
	}
	sur := ClippedSurrogate(nlp, old, adv, cfg.ClipRange)
	st := timestepStats{Surrogate: sur, NewLP: nlp}
	for i, v := range nlp {
		if err := training.CheckFinite(fmt.Sprintf("log-probability of step %d under the policy", tb.steps[i][j]), float64(v)); err != nil {
			e.ResetTape()
			return st, err
		}
	}
	if err := training.CheckFinite("surrogate loss", sur.Loss); err != nil {
		e.ResetTape()
		return st, err
	}
	if sur.MaxLogRatio > cfg.MaxLogRatio {
		e.ResetTape()
		return st, fmt.Errorf("ddpo: %w: |log ratio| %.3g exceeds the bound %g (the policy moved too far from the sampling policy: lower the learning rate); the run stopped and the last good checkpoint is kept", ErrRatio, sur.MaxLogRatio, cfg.MaxLogRatio)
	}
	g := make([]float32, len(sur.Grad))
	for i, v := range sur.Grad {
		g[i] = float32(v * scale)
	}
	if !lp.RequiresGrad() {
		return st, fmt.Errorf("ddpo: the log-probabilities do not depend on the LoRA (is it attached?)")
	}
	if err := e.BackwardWith(lp, e.FromSlice(g, len(g))); err != nil {
		return st, err
	}
	return st, nil
}

// step applies the accumulated gradients and returns the gradient norm
// before clipping.
func (t *Trainer) step() (float64, error) {
	t.opt.Step()
	gn, err := t.opt.GradNorm()
	t.opt.ZeroGrad()
	if err != nil {
		return 0, err
	}
	if err := training.CheckFinite("gradient norm", float64(gn)); err != nil {
		return 0, err
	}
	return float64(gn), nil
}
