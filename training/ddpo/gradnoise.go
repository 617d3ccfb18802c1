package ddpo

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/training"
)

// GradientNoise measures how much of DDPO's policy gradient is signal at
// the current policy: the gradient of the surrogate (at ratio 1, where it
// is the score-function estimate -mean_i A_i grad log p_i) is computed
// separately for every training batch of many freshly sampled images and
// every step of the training window, and the spread of these estimates
// around their mean separates the expected gradient (the signal) from the
// sampling noise.
//
// For K independent estimates v_b (batches of GroupSize samples) with mean
// m and spread S = sum_b |v_b - m|^2 / (K-1), |E v|^2 is estimated without
// bias by |m|^2 - S/K, and one sample's gradient has noise variance about
// S * GroupSize. SamplesNeeded = noise^2 / signal^2 is the number of
// samples whose mean gradient has a signal-to-noise ratio of 1: an update
// from fewer samples points mostly in a random direction.
type GradientNoise struct {
	Samples, Groups, GroupSize int
	// Steps are the measured sampling steps (the training window), with
	// their DDIM timesteps.
	Steps, Timesteps []int
	// PerStep are the figures of each step's gradient alone; Total those
	// of the mean over the window's steps (what an update follows).
	PerStep []NoiseFigures
	Total   NoiseFigures
	// ByModule are the figures of the mean gradient restricted to the
	// adapters of one kind of projection ("attn2.to_k": every
	// cross-attention key projection's Down and Up), in name order.
	ByModule []ModuleNoise
	// RewardMean and RewardStd are the measured samples' rewards.
	RewardMean, RewardStd float64
}

// NoiseFigures are the signal and noise of one gradient estimate.
type NoiseFigures struct {
	MeanNorm float64 // |m|: norm of the mean over all groups
	Signal   float64 // estimated |E v| (0 when |m|^2 <= S/K: no detectable signal)
	Noise    float64 // estimated noise norm of one sample's gradient
	// SamplesNeeded is Noise^2/Signal^2 (+Inf without detectable signal).
	SamplesNeeded float64
	// HalfCosine is the cosine between the mean gradients of the first
	// and the second half of the groups: about 0 for noise, near 1 for a
	// well-determined direction.
	HalfCosine float64
}

// ModuleNoise are the figures of one kind of adapted projection.
type ModuleNoise struct {
	Module string
	Params int
	NoiseFigures
}

// moduleKind is the projection kind of a LoRA parameter's name
// ("...transformer_blocks.0.attn2.to_k.lora.up.weight" -> "attn2.to_k"),
// or "other".
func moduleKind(name string) string {
	parts := strings.Split(name, ".")
	for i := 0; i+1 < len(parts); i++ {
		if strings.HasPrefix(parts[i], "attn") && strings.HasPrefix(parts[i+1], "to_") {
			return parts[i] + "." + parts[i+1]
		}
	}
	return "other"
}

// measureEpoch0 is the first epoch index whose noise the measurement
// uses, far beyond any run's epochs.
const measureEpoch0 = 1 << 16

// MeasureGradient samples n images (a multiple of SamplesPerEpoch) with
// the current policy, computes their advantages as an epoch of training
// would (a fresh StatTracker per SamplesPerEpoch images), and measures the
// gradient of every training batch at every step of the training window
// (Config.EarlyFraction), without changing the LoRA. tick is called after
// every DDIM step of sampling and every measured (batch, step).
func (t *Trainer) MeasureGradient(ctx context.Context, n int, tick func(done, total int)) (*GradientNoise, error) {
	cfg := t.cfg
	if n < 2*cfg.BatchSize || n%cfg.SamplesPerEpoch != 0 {
		return nil, fmt.Errorf("ddpo: measuring the gradient needs a multiple of %d samples, at least two batches of %d (got %d)", cfg.SamplesPerEpoch, cfg.BatchSize, n)
	}
	w := cfg.window()
	nb := cfg.SamplesPerEpoch / cfg.BatchSize
	window := make([]int, w)
	for k := range window {
		window[k] = k
	}
	params := t.Params()
	size := 0
	for _, p := range params {
		size += p.Len()
	}
	// per[k][b] is batch b's gradient at window step k.
	per := make([][][]float64, w)
	var rewards []float64
	t.opt.ZeroGrad()
	err := t.measureRounds(ctx, n, nb*w, tick, func(samples []*Sample, step func()) error {
		for _, s := range samples {
			rewards = append(rewards, s.Reward)
		}
		adv, err := t.advantages(cfg.newTracker(), samples)
		if err != nil {
			return err
		}
		for b := 0; b < nb; b++ {
			g, err := t.stepGradients(ctx, samples, adv, b, window, params, step)
			if err != nil {
				return err
			}
			for k := range g {
				per[k] = append(per[k], g[k])
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	gn := &GradientNoise{Samples: n, Groups: len(per[0]), GroupSize: cfg.BatchSize, Steps: window}
	ts := t.c.Schedule.Timesteps(cfg.Steps)
	for _, k := range window {
		gn.Timesteps = append(gn.Timesteps, ts[k])
		gn.PerStep = append(gn.PerStep, noiseFigures(per[k], cfg.BatchSize))
	}
	mean := make([][]float64, gn.Groups)
	for b := range mean {
		mean[b] = make([]float64, size)
		for k := range per {
			for i, v := range per[k][b] {
				mean[b][i] += v / float64(w)
			}
		}
	}
	gn.Total = noiseFigures(mean, cfg.BatchSize)
	kinds := map[string][]int{} // kind -> coordinates
	off := 0
	for _, p := range params {
		k := moduleKind(p.Name)
		for i := 0; i < p.Len(); i++ {
			kinds[k] = append(kinds[k], off+i)
		}
		off += p.Len()
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		sub := make([][]float64, len(mean))
		for b, v := range mean {
			for _, i := range kinds[k] {
				sub[b] = append(sub[b], v[i])
			}
		}
		gn.ByModule = append(gn.ByModule, ModuleNoise{Module: k, Params: len(kinds[k]), NoiseFigures: noiseFigures(sub, cfg.BatchSize)})
	}
	gn.RewardMean, gn.RewardStd = meanStd(rewards)
	return gn, nil
}

// stepGradients returns the gradient of training batch b of samples at
// each step of window, one vector per step, calling step after each.
func (t *Trainer) stepGradients(ctx context.Context, samples []*Sample, adv []float64, b int, window []int, params []*gpu.Tensor, step func()) ([][]float64, error) {
	bs := t.cfg.BatchSize
	idx := make([]int, bs)
	steps := make([][]int, bs)
	for i := range idx {
		idx[i], steps[i] = b*bs+i, window
	}
	chunks, err := t.batchChunks(samples, adv, idx, steps)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range chunks {
			c.ctx.Release()
		}
	}()
	out := make([][]float64, len(window))
	for k := range window {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, c := range chunks {
			if _, err := t.accumulate(c, k, float64(len(c.samples))/float64(bs)); err != nil {
				t.opt.ZeroGrad()
				return nil, err
			}
		}
		out[k], err = readGrads(t.e, params)
		t.opt.ZeroGrad()
		if err != nil {
			return nil, err
		}
		step()
	}
	return out, nil
}

// readGrads returns the parameters' gradients as one vector (zeros for a
// parameter without one), joined on the GPU and read back once.
func readGrads(e *gpu.Engine, params []*gpu.Tensor) ([]float64, error) {
	sc := e.Scope()
	defer sc.Close()
	var v []float32
	var err error
	e.NoGrad(func() {
		flat := make([]*gpu.Tensor, len(params))
		for i, p := range params {
			if p.Grad == nil {
				flat[i] = e.FromSlice(make([]float32, p.Len()), p.Len())
			} else {
				flat[i] = p.Grad.Reshape(p.Len())
			}
		}
		v, err = e.Concat(0, flat...).Read()
	})
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out, nil
}

// noiseFigures computes the figures of K estimates vs, each the mean over
// groupSize samples.
func noiseFigures(vs [][]float64, groupSize int) NoiseFigures {
	k := len(vs)
	m := make([]float64, len(vs[0]))
	for _, v := range vs {
		for i, x := range v {
			m[i] += x / float64(k)
		}
	}
	var spread float64
	for _, v := range vs {
		for i, x := range v {
			d := x - m[i]
			spread += d * d
		}
	}
	spread /= float64(k - 1)
	m2 := dot(m, m)
	f := NoiseFigures{MeanNorm: math.Sqrt(m2), Noise: math.Sqrt(spread * float64(groupSize)), SamplesNeeded: math.Inf(1)}
	if s2 := m2 - spread/float64(k); s2 > 0 {
		f.Signal = math.Sqrt(s2)
		f.SamplesNeeded = spread * float64(groupSize) / s2
	}
	h := k / 2
	a, b := make([]float64, len(m)), make([]float64, len(m))
	for j, v := range vs {
		dst := a
		if j >= h {
			dst = b
		}
		for i, x := range v {
			dst[i] += x
		}
	}
	if na, nb := dot(a, a), dot(b, b); na > 0 && nb > 0 {
		f.HalfCosine = dot(a, b) / math.Sqrt(na*nb)
	}
	return f
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// InitialNoiseShare splits the reward's spread within a prompt into the
// part that the noise shared by pairs of images decides (x_T, and the z
// of the first SharedSteps DDIM steps) and the part that the remaining
// steps' noise decides. DDPO's actions are the steps; x_T is not one, so
// its part cannot be credited to the policy; a large part for the last
// steps alone means the reward turns on fine detail.
type InitialNoiseShare struct {
	Pairs       int
	SharedSteps int
	// Within is the reward variance within a prompt, Rest that between
	// images with the same prompt and the same shared noise.
	Within, Rest float64
	// Share is 1 - Rest/Within: the share of the within-prompt variance
	// that the shared noise decides.
	Share float64
}

// MeasureInitialNoise samples n images (a multiple of SamplesPerEpoch)
// with the current policy in pairs that share x_T and the noise of the
// first sharedSteps DDIM steps but no later noise, and splits the
// within-prompt reward variance: half the mean squared difference within
// a pair estimates the unshared part, that between the two pairs of a
// prompt's group of four the whole. It needs SamplesPerPrompt to be a
// multiple of 4.
func (t *Trainer) MeasureInitialNoise(ctx context.Context, n, sharedSteps int, tick func(done, total int)) (*InitialNoiseShare, error) {
	cfg := t.cfg
	if cfg.SamplesPerPrompt < 4 || cfg.SamplesPerPrompt%4 != 0 || n < cfg.SamplesPerEpoch || n%cfg.SamplesPerEpoch != 0 {
		return nil, fmt.Errorf("ddpo: measuring x_T's share needs samples per prompt a multiple of 4 (got %d) and a multiple of %d samples (got %d)", cfg.SamplesPerPrompt, cfg.SamplesPerEpoch, n)
	}
	if sharedSteps < 0 || sharedSteps >= cfg.Steps {
		return nil, fmt.Errorf("ddpo: %d shared steps of %d", sharedSteps, cfg.Steps)
	}
	t.pairNoise = 1 + sharedSteps
	defer func() { t.pairNoise = 0 }()
	var same, cross float64
	var nSame, nCross int
	err := t.measureRounds(ctx, n, 0, tick, func(samples []*Sample, _ func()) error {
		for g := 0; g+4 <= len(samples); g += 4 {
			s := samples[g : g+4]
			for _, p := range [][2]int{{0, 1}, {2, 3}} {
				d := s[p[0]].Reward - s[p[1]].Reward
				same += d * d / 2
				nSame++
			}
			for _, p := range [][2]int{{0, 2}, {0, 3}, {1, 2}, {1, 3}} {
				d := s[p[0]].Reward - s[p[1]].Reward
				cross += d * d / 2
				nCross++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := &InitialNoiseShare{Pairs: nSame, SharedSteps: sharedSteps, Within: cross / float64(nCross), Rest: same / float64(nSame)}
	if out.Within > 0 {
		out.Share = 1 - out.Rest/out.Within
	}
	return out, nil
}

// MeasureReward samples n images (a multiple of SamplesPerEpoch) with the
// current policy from the measurements' fixed noise and prompts and
// returns their rewards in order: two policies measured this way are
// compared image by image.
func (t *Trainer) MeasureReward(ctx context.Context, n int, tick func(done, total int)) ([]float64, error) {
	cfg := t.cfg
	if n < cfg.SamplesPerEpoch || n%cfg.SamplesPerEpoch != 0 {
		return nil, fmt.Errorf("ddpo: measuring the reward needs a multiple of %d samples (got %d)", cfg.SamplesPerEpoch, n)
	}
	var out []float64
	err := t.measureRounds(ctx, n, 0, tick, func(samples []*Sample, _ func()) error {
		for _, s := range samples {
			out = append(out, s.Reward)
		}
		return nil
	})
	return out, err
}

// measureRounds samples n images (a multiple of SamplesPerEpoch) in
// rounds of an epoch's size from the measurements' own noise (epochs
// measureEpoch0 on) and passes each round's samples to f. Progress counts
// every DDIM step of a sampling batch and extra units per round, which f
// reports through step.
func (t *Trainer) measureRounds(ctx context.Context, n, extra int, tick func(done, total int), f func(samples []*Sample, step func()) error) error {
	cfg := t.cfg
	rounds := n / cfg.SamplesPerEpoch
	total := rounds * (cfg.SamplesPerEpoch/cfg.BatchSize*cfg.Steps + extra)
	done := 0
	step := func() {
		done++
		if tick != nil {
			tick(done, total)
		}
	}
	for r := 0; r < rounds; r++ {
		samples, err := t.sampleEpoch(ctx, measureEpoch0+r, step)
		if err != nil {
			return err
		}
		if err := f(samples, step); err != nil {
			return err
		}
	}
	return nil
}

// LoadPolicy sets the trainer's LoRA from a checkpoint of a run
// (training.SaveCheckpoint in its work folder), so that the measurements
// can be taken at a trained policy. The checkpoint must hold this
// trainer's LoRA parameters; its optimizer state is loaded too.
func (t *Trainer) LoadPolicy(path string) error {
	var st checkpointState
	_, err := training.LoadCheckpoint(path, t.Params(), t.opt, &st)
	return err
}
