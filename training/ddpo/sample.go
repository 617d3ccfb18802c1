package ddpo

import (
	"context"
	"fmt"
	"image"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/training"
)

// sampleEpoch draws the epoch's prompts, samples every image with the
// current policy in batches, and scores them. tick is called after every
// DDIM step of a batch.
func (t *Trainer) sampleEpoch(ctx context.Context, ep int, tick func()) ([]*Sample, error) {
	cfg := t.cfg
	samples := make([]*Sample, cfg.SamplesPerEpoch)
	for i, p := range cfg.epochPrompts(ep) {
		samples[i] = &Sample{Prompt: p}
	}
	for b := 0; b < len(samples); b += cfg.BatchSize {
		if err := t.sampleBatch(ctx, ep, b, samples[b:b+cfg.BatchSize], tick); err != nil {
			return nil, err
		}
	}
	return samples, nil
}

// epochPrompts returns the prompt index of each of epoch ep's samples:
// uniform draws, each repeated SamplesPerPrompt times in a row.
func (c Config) epochPrompts(ep int) []int {
	ps := training.NewStream(c.Seed, ep, purposePrompts)
	out := make([]int, c.SamplesPerEpoch)
	g := max(1, c.SamplesPerPrompt)
	for i := 0; i < len(out); i += g {
		p := ps.Intn(len(c.Prompts))
		for j := i; j < i+g && j < len(out); j++ {
			out[j] = p
		}
	}
	return out
}

// latentShape is [C, h, w] of one latent.
func (t *Trainer) latentShape() (c, h, w int) {
	f := t.c.VAE.Factor()
	return t.c.UNet.Cfg.InChannels, t.cfg.Height / f, t.cfg.Width / f
}

// sampleBatch samples batch (samples first.. of epoch ep) with stochastic
// DDIM and classifier-free guidance, records the trajectories, decodes
// each x_0 and scores the images.
func (t *Trainer) sampleBatch(ctx context.Context, ep, first int, batch []*Sample, tick func()) error {
	e, cfg := t.e, t.cfg
	n := len(batch)
	prompts := make([]string, n)
	for j, s := range batch {
		prompts[j] = cfg.Prompts[s.Prompt]
	}
	cx, cond, uncond, err := t.conditioning(prompts)
	if err != nil {
		return err
	}
	cx.Release()
	defer cond.Release()
	defer uncond.Release()
	guide, err := generate.NewGuide(t.c.UNet, cond, uncond, cfg.Guidance)
	if err == nil {
		guide.Schedule = t.c.Schedule
	}
	if err != nil {
		return err
	}
	defer guide.Release()
	smp, err := t.c.Schedule.NewSampler("ddim", cfg.Steps, cfg.Eta)
	if err != nil {
		return err
	}
	lc, h, w := t.latentShape()
	per := lc * h * w
	noise := func(k int, out []float32) {
		for j := range batch {
			i := first + j
			if k < t.pairNoise {
				i &^= 1 // samples 2m and 2m+1 share this draw (MeasureInitialNoise)
			}
			generate.Noise(cfg.Seed^noiseKey, noiseStream(ep, i, k), out[j*per:(j+1)*per])
		}
	}
	init := make([]float32, n*per)
	noise(0, init)
	xT, err := e.Upload(gpu.Activations, init, n, lc, h, w)
	if err != nil {
		return err
	}
	defer xT.Release()
	z := make([]float32, n*per)
	x0, tr, err := generate.Sample(ctx, xT, generate.SampleConfig{
		Sampler: smp, Guide: guide, Record: true, RecordPred0: cfg.StepBaseline,
		Noise:    func(k int) []float32 { noise(k+1, z); return z },
		Progress: func(int, int) { tick() },
	})
	if err != nil {
		return err
	}
	x0.Release()
	if len(tr.LogProbs) != cfg.Steps || len(tr.Latents) != cfg.Steps+1 {
		return fmt.Errorf("ddpo: the sampler recorded %d latents and %d log-probabilities for %d steps", len(tr.Latents), len(tr.LogProbs), cfg.Steps)
	}
	for j, s := range batch {
		s.Latents = make([][]float32, cfg.Steps+1)
		for k := range s.Latents {
			s.Latents[k] = tr.Latents[k][j*per : (j+1)*per : (j+1)*per]
		}
		s.LogProbs = make([]float32, cfg.Steps)
		for k := range s.LogProbs {
			s.LogProbs[k] = tr.LogProbs[k][j]
			if v := float64(s.LogProbs[k]); math.IsNaN(v) || math.IsInf(v, 0) {
				return &training.NotFiniteError{What: fmt.Sprintf("sampling log-probability (sample %d, step %d)", first+j, k), Value: v, Step: ep + 1}
			}
		}
	}
	finals := make([][]float32, n)
	for j, s := range batch {
		finals[j] = s.Latents[cfg.Steps]
	}
	r, err := t.decodeScore(ctx, finals, prompts)
	if err != nil {
		return err
	}
	for j, s := range batch {
		if err := training.CheckFinite(fmt.Sprintf("reward %s of sample %d (%q)", t.scorer.Name(), first+j, prompts[j]), r[j]); err != nil {
			err.(*training.NotFiniteError).Step = ep + 1
			return err
		}
		s.Reward = r[j]
	}
	if cfg.StepBaseline {
		if len(tr.Pred0) != cfg.Steps {
			return fmt.Errorf("ddpo: the sampler recorded %d x_0 predictions for %d steps", len(tr.Pred0), cfg.Steps)
		}
		for _, s := range batch {
			s.StepRewards = make([]float64, cfg.Steps)
		}
		for k, p0 := range tr.Pred0 {
			lat := make([][]float32, n)
			for j := range lat {
				lat[j] = p0[j*per : (j+1)*per]
			}
			r, err := t.decodeScore(ctx, lat, prompts)
			if err != nil {
				return err
			}
			for j, s := range batch {
				if err := training.CheckFinite(fmt.Sprintf("reward %s of sample %d's x_0 prediction at step %d", t.scorer.Name(), first+j, k), r[j]); err != nil {
					err.(*training.NotFiniteError).Step = ep + 1
					return err
				}
				s.StepRewards[k] = r[j]
			}
		}
	}
	return nil
}

// decodeScore decodes latents (one per image, C*h*w values each) and scores
// the images against prompts.
func (t *Trainer) decodeScore(ctx context.Context, latents [][]float32, prompts []string) ([]float64, error) {
	e, cfg := t.e, t.cfg
	n := len(latents)
	lc, h, w := t.latentShape()
	per := lc * h * w
	// Decode in chunks of at most 512x512 pixels: a whole batch at 512x512
	// would dominate the run's memory, while small images decode faster
	// together.
	images := make([]*image.NRGBA, 0, n)
	chunk := max(1, 512*512/(cfg.Width*cfg.Height))
	for j0 := 0; j0 < n; j0 += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		j1 := min(n, j0+chunk)
		v := make([]float32, 0, (j1-j0)*per)
		for _, l := range latents[j0:j1] {
			v = append(v, l...)
		}
		lat, err := e.Upload(gpu.Activations, v, j1-j0, lc, h, w)
		if err != nil {
			return nil, err
		}
		im, err := generate.DecodeImages(t.c.VAE, lat)
		lat.Release()
		if err != nil {
			return nil, err
		}
		images = append(images, im...)
	}
	r, err := t.scorer.Score(ctx, images, prompts)
	if err != nil {
		return nil, fmt.Errorf("ddpo: reward %s: %w", t.scorer.Name(), err)
	}
	if len(r) != n {
		return nil, fmt.Errorf("ddpo: reward %s returned %d scores for %d images", t.scorer.Name(), len(r), n)
	}
	return r, nil
}
