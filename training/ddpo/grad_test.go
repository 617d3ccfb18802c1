package ddpo

import (
	"context"
	"math"
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/training/reward"
)

// gradTrainer makes a trainer on the tiny model with CFG and samples one
// batch of two trajectories under its current LoRA.
func gradTrainer(t *testing.T, steps int, init func(tr *Trainer)) (*Trainer, []*Sample) {
	t.Helper()
	_, c := tiny(t)
	cfg := Config{Prompts: []string{"a sks dog playing soccer", "a dog riding a bike"}, SamplesPerEpoch: 2, BatchSize: 2,
		Steps: steps, Width: 64, Height: 64, Seed: 11}
	tr, err := New(c, reward.Brightness{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Release)
	if init != nil {
		init(tr)
	}
	samples, err := tr.sampleEpoch(context.Background(), 0, func() {})
	if err != nil {
		t.Fatal(err)
	}
	return tr, samples
}

// batchFor builds the training batch of samples training the given steps.
func batchFor(t *testing.T, tr *Trainer, samples []*Sample, adv []float64, steps [][]int) *trainBatch {
	t.Helper()
	prompts := make([]string, len(samples))
	for i, s := range samples {
		prompts[i] = tr.cfg.Prompts[s.Prompt]
	}
	cx, cond, uncond, err := tr.conditioning(prompts)
	if err != nil {
		t.Fatal(err)
	}
	cond.Release()
	uncond.Release()
	t.Cleanup(cx.Release)
	return &trainBatch{samples: samples, adv: adv, steps: steps, ctx: cx}
}

// TestLogProbs_ratioOne: with the zero-initialised LoRA (the policy that
// sampled), every step's log-probability recomputed as in training — the
// elements of the batch at different steps, per-element coefficients,
// gradient checkpointing on — equals the one recorded while sampling.
func TestLogProbs_ratioOne(t *testing.T) {
	const steps = 3
	tr, samples := gradTrainer(t, steps, nil)
	e := tr.e
	// Sample 0 walks the steps forwards, sample 1 backwards, so that every
	// batch mixes timesteps.
	fw, bw := make([]int, steps), make([]int, steps)
	for k := range fw {
		fw[k], bw[k] = k, steps-1-k
	}
	tb := batchFor(t, tr, samples, []float64{1, -1}, [][]int{fw, bw})
	tr.c.UNet.Checkpointing = true
	defer func() { tr.c.UNet.Checkpointing = false }()
	worst := 0.0
	for j := 0; j < steps; j++ {
		s := e.Scope()
		lp, old, err := tr.logProbs(tb, j)
		if err != nil {
			t.Fatal(err)
		}
		if !lp.RequiresGrad() {
			t.Fatal("the recomputed log-probabilities are not on the tape")
		}
		v := lp.MustRead()
		e.ResetTape()
		s.Close()
		for i := range v {
			d := math.Abs(float64(v[i]) - float64(old[i]))
			worst = math.Max(worst, d)
			if d > 2e-5*math.Max(1, math.Abs(float64(old[i]))) {
				t.Errorf("sample %d step %d: recomputed log-prob %v, sampled %v", i, tb.steps[i][j], v[i], old[i])
			}
		}
	}
	t.Logf("max |log ratio| over %d steps x 2 samples: %.3g", steps, worst)
}

// TestGradient_finiteDifferences checks one update's gradient: the engine's
// gradient of the clipped surrogate summed over two trained timesteps,
// with respect to LoRA parameters, against central finite differences of
// the same loss evaluated in float64 from read-back log-probabilities.
// The LoRA's Up starts non-zero (so Down has a gradient too) and the
// trajectories are sampled under it, so the ratio is 1 at the unperturbed
// point: there the clip (1e-4) is inactive and the clipped and unclipped
// objectives share their gradient. The perturbed evaluations move ratios
// by more than 1e-4, so the finite differences use a clip range that
// stays inactive (1e3); the clipped branch itself is covered by
// TestClippedSurrogate.
func TestGradient_finiteDifferences(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	tr, samples := gradTrainer(t, 3, func(tr *Trainer) {
		for _, p := range tr.Params() {
			if p.Dim(0) > tr.cfg.Rank || len(p.Shape()) == 2 && p.Dim(1) == tr.cfg.Rank { // Up [out, rank]
				v := make([]float32, p.Len())
				for i := range v {
					v[i] = float32(0.05 * rng.NormFloat64())
				}
				if err := p.Write(v); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	e := tr.e
	adv := []float64{1.3, -0.7}
	// Train steps 0 and 1 (t = 667, 334); the last step's small sigma
	// would only amplify float32 noise in the finite differences.
	tb := batchFor(t, tr, samples, adv, [][]int{{0, 1}, {1, 0}})
	params := tr.Params()
	gpu.ZeroGrad(params...)
	tr.c.UNet.Checkpointing = true
	for j := 0; j < 2; j++ {
		st, err := tr.accumulate(tb, j, 1)
		if err != nil {
			t.Fatal(err)
		}
		if st.MaxLogRatio > 1e-4 {
			t.Fatalf("ratio not 1 at the sampling policy: |log ratio| %.3g", st.MaxLogRatio)
		}
	}
	tr.c.UNet.Checkpointing = false
	loss := func() float64 {
		var l float64
		e.NoGrad(func() {
			for j := 0; j < 2; j++ {
				s := e.Scope()
				lp, old, err := tr.logProbs(tb, j)
				if err != nil {
					t.Fatal(err)
				}
				l += ClippedSurrogate(lp.MustRead(), old, adv, 1e3).Loss
				s.Close()
			}
		})
		return l
	}
	// The largest-gradient element of two Down and two Up tensors, at the
	// U-Net's first and last attention blocks.
	var checked int
	for _, pi := range []int{0, 3, len(params) - 4, len(params) - 1} {
		p := params[pi]
		g := p.Grad.MustRead()
		best := 0
		for i := range g {
			if math.Abs(float64(g[i])) > math.Abs(float64(g[best])) {
				best = i
			}
		}
		v := p.MustRead()
		const eps = 1e-2
		at := func(x float32) float64 {
			w := append([]float32(nil), v...)
			w[best] = x
			if err := p.Write(w); err != nil {
				t.Fatal(err)
			}
			return loss()
		}
		lp, lm := at(v[best]+eps), at(v[best]-eps)
		p.Write(v)
		fd := (lp - lm) / (2 * eps)
		rel := math.Abs(fd-float64(g[best])) / math.Max(math.Abs(fd), 1e-3)
		t.Logf("%s[%d] = %.4f: engine %.6g, finite difference %.6g (rel. error %.2g)", p.Name, best, v[best], g[best], fd, rel)
		if math.Abs(fd) < 1e-3 {
			t.Errorf("%s: gradient %.3g too small to check", p.Name, fd)
		}
		if rel > 0.02 {
			t.Errorf("%s[%d]: engine gradient %.6g, finite difference %.6g", p.Name, best, g[best], fd)
		}
		checked++
	}
	gpu.ZeroGrad(params...)
	if checked < 4 {
		t.Fatal("too few parameters checked")
	}
}

// TestMicroBatch_sameGradient: a batch trained in micro-batches of one
// accumulates the gradient of the whole batch (up to float rounding).
func TestMicroBatch_sameGradient(t *testing.T) {
	tr, samples := gradTrainer(t, 2, nil)
	adv := []float64{0.9, -1.1}
	idx := []int{1, 0}
	steps := [][]int{{0, 1}, {1, 0}}
	grads := func(micro int) [][]float32 {
		tr.cfg.MicroBatch = micro
		chunks, err := tr.batchChunks(samples, adv, idx, steps)
		if err != nil {
			t.Fatal(err)
		}
		if len(chunks) != 2/micro {
			t.Fatalf("micro-batch %d made %d chunks", micro, len(chunks))
		}
		gpu.ZeroGrad(tr.Params()...)
		for j := 0; j < 2; j++ {
			for _, c := range chunks {
				if _, err := tr.accumulate(c, j, float64(len(c.samples))/2); err != nil {
					t.Fatal(err)
				}
			}
		}
		var out [][]float32
		for _, p := range tr.Params() {
			if p.Grad != nil {
				out = append(out, p.Grad.MustRead())
			} else {
				out = append(out, nil)
			}
		}
		for _, c := range chunks {
			c.ctx.Release()
		}
		gpu.ZeroGrad(tr.Params()...)
		return out
	}
	whole, split := grads(2), grads(1)
	var worst, scale float64
	for i := range whole {
		for k := range whole[i] {
			worst = math.Max(worst, math.Abs(float64(whole[i][k]-split[i][k])))
			scale = math.Max(scale, math.Abs(float64(whole[i][k])))
		}
	}
	t.Logf("max |gradient difference| %.3g (max gradient %.3g)", worst, scale)
	if !(scale > 0) || worst > 1e-4*scale {
		t.Fatalf("micro-batched gradient differs by %.3g (max gradient %.3g)", worst, scale)
	}
}
