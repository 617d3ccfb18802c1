// Package ddpo aligns a (personalised) Stable Diffusion 1.x model with a
// reward by reinforcement learning: DDPO (Black et al. 2023) with the
// importance-sampled, clipped objective, as InstructBooth (Chae et al.
// 2023) applies it after DreamBooth.
//
// An epoch samples SamplesPerEpoch images with stochastic DDIM (eta 1)
// under the current policy — the U-Net with a trainable LoRA attached —
// recording every latent and each step's log-probability
// (generate.Sample with Record), scores the decoded images with a
// reward.Scorer, turns rewards into advantages per prompt (StatTracker,
// clipped at ±AdvClip), and then, for a random TimestepFraction of every
// sample's steps, recomputes the step's log-probability under the current
// LoRA (both classifier-free-guidance halves through the LoRA U-Net) and
// descends the clipped surrogate (ClippedSurrogate), one timestep's graph
// at a time with gradients accumulated over timesteps and batches, AdamW
// on the LoRA only. Epochs end with a checkpoint (LoRA, AdamW state,
// tracker buffers, history) from which an interrupted run resumes
// exactly: every random draw is a counter-based function of (Seed, epoch,
// use) (training.Stream, generate.Noise).
package ddpo

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Defaults of Config's zero fields.
const (
	DefaultEpochs          = 10
	DefaultSamplesPerEpoch = 16
	DefaultBatchSize       = 8
	// DefaultMicroBatch keeps an SD 1.5 update at 512x512 (U-Net batch 8
	// with guidance) well inside 8 GB; see BenchmarkDDPOStep.
	DefaultMicroBatch = 4
	DefaultSteps      = 50
	DefaultGuidance   = 7.5
	DefaultEta        = 1
	DefaultSize       = 512
	DefaultRank       = 4
	// DefaultLR is InstructBooth's learning rate for the RL LoRA, 2e-5.
	// (ddpo-pytorch's LoRA configs use 3e-4.)
	DefaultLR          = 2e-5
	DefaultBeta1       = 0.9
	DefaultBeta2       = 0.99
	DefaultWeightDecay = 0.01
	DefaultAdamEps     = 1e-8
	DefaultMaxGradNorm = 1.0
	DefaultClipRange   = 1e-4
	DefaultAdvClip     = 5
	DefaultStatBuffer  = 16
	DefaultStatMin     = 16
	// DefaultMaxLogRatio bounds |log(new/old probability)| of any trained
	// step: beyond it (a ratio over ~150 or under 1/150) the policy has
	// moved so far from the one that sampled that the update is garbage,
	// and the run stops.
	DefaultMaxLogRatio = 5
	DefaultKeep        = 2
)

// Config describes a DDPO run. Zero fields take the defaults above
// (WithDefaults); Guidance in (0, 1] turns guidance off.
type Config struct {
	// Model identifies the model being aligned (e.g. its path and any
	// fused personalised LoRA). It is not used except to refuse resuming a
	// checkpoint written for another model.
	Model string
	// Prompts are the training prompts (see Prompts); each sample draws
	// one uniformly.
	Prompts []string
	// Epochs is the number of sample-then-train rounds.
	Epochs int
	// SamplesPerEpoch images are sampled per epoch, BatchSize at a time;
	// training uses batches of BatchSize too.
	SamplesPerEpoch, BatchSize int
	// SamplesPerPrompt groups an epoch's samples: SamplesPerEpoch /
	// SamplesPerPrompt prompts are drawn, each sampled this many times
	// (consecutively), so every prompt's rewards have peers from the same
	// policy to be compared with (see StatMinCount).
	// 0 or 1 draws a prompt per sample.
	SamplesPerPrompt int
	// MicroBatch splits each training batch into forward/backward passes
	// of at most this many trajectories (the gradient is the same up to
	// float rounding); it bounds the update's activation memory. 0 means
	// DefaultMicroBatch; a value >= BatchSize runs whole batches.
	MicroBatch int
	// AccumBatches is the number of training batches whose gradients are
	// summed (with every trained timestep of them) into one AdamW step;
	// 0 means all of an inner epoch's batches: one update per inner epoch.
	AccumBatches int
	// InnerEpochs is the number of passes over each epoch's samples.
	InnerEpochs int
	// Steps is the number of DDIM steps; Eta its stochasticity (> 0: the
	// log-probabilities need noise).
	Steps    int
	Guidance float32
	Eta      float32
	// TimestepFraction of each sample's steps are trained (at least one);
	// 0 means 1 (all).
	TimestepFraction float64
	// EarlyFraction, in (0, 1), draws the trained steps from the first
	// EarlyFraction of each trajectory (at least one step; TimestepFraction
	// still counts against all Steps, capped by the window); 0 means all
	// steps. With eta 1 the gradient of a step's log-probability carries
	// a factor 1/sigma_t, which over 10 DDIM steps of SD's schedule grows
	// from 1.3 at the first step to 24 and 48 at the last two, so the
	// late, low-noise steps (fine detail) dominate the updates; the early
	// steps, where the layout and the background are decided, get their
	// share only in a window.
	EarlyFraction float64
	// Width and Height of the images, multiples of 64.
	Width, Height int
	// Rank and Alpha of the trainable LoRA on the U-Net's attention
	// projections (scale Alpha/Rank; Alpha 0 means Rank, i.e. scale 1).
	Rank  int
	Alpha float32
	// AdamW settings and the global gradient-norm clip.
	LR, Beta1, Beta2, WeightDecay, AdamEps, MaxGradNorm float32
	// ClipRange is PPO's ratio clip c: ratios are clipped to [1-c, 1+c].
	ClipRange float64
	// AdvClip clips the advantages to [-AdvClip, AdvClip].
	AdvClip float64
	// StatBuffer and StatMinCount configure the per-prompt StatTracker
	// (StatMinCount 0: SamplesPerPrompt when that is over 1, so each group
	// is standardised within itself, else DefaultStatMin).
	StatBuffer, StatMinCount int
	// PooledStd divides every centred reward by the batch's pooled
	// within-prompt standard deviation instead of its prompt's own
	// (StatTracker.Pooled).
	PooledStd bool
	// StepBaseline subtracts from each trained step's advantage a
	// baseline that depends only on the step's starting latent x_t: the
	// reward of the model's x_0 prediction at x_t (decoded and scored
	// while sampling), centred per prompt and scaled by a least-squares
	// fit per step over the epoch (stepBaseline). The reward spread that
	// x_T and the earlier steps already decided is noise to a step's
	// gradient; a state-dependent baseline removes what the prediction
	// explains of it and leaves the expected gradient unchanged (up to
	// the O(1/N) of fitting the scale on the same samples). It costs a
	// decode and a reward evaluation per sampling step, which for SD at
	// 512x512 with a model reward can exceed the sampling itself.
	StepBaseline bool
	// MaxLogRatio stops the run when a trained step's |log ratio| exceeds
	// it.
	MaxLogRatio float64
	// Seed determines the LoRA's initialisation and every random draw.
	Seed uint64
	// NoGradCheckpointing keeps every U-Net activation for backward
	// instead of recomputing blocks (UNet.Checkpointing): faster, far more
	// memory.
	NoGradCheckpointing bool
	// WorkDir holds the per-epoch checkpoints ("" = none); a run started
	// on a folder with a checkpoint resumes from it.
	WorkDir string
	// KeepCheckpoints is how many checkpoints WorkDir keeps.
	KeepCheckpoints int
}

// WithDefaults returns c with zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setF := func(p *float32, v float32) {
		if *p == 0 {
			*p = v
		}
	}
	setD := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	setI(&c.Epochs, DefaultEpochs)
	setI(&c.SamplesPerEpoch, DefaultSamplesPerEpoch)
	setI(&c.BatchSize, DefaultBatchSize)
	setI(&c.MicroBatch, DefaultMicroBatch)
	setI(&c.InnerEpochs, 1)
	setI(&c.Steps, DefaultSteps)
	setF(&c.Guidance, DefaultGuidance)
	setF(&c.Eta, DefaultEta)
	setD(&c.TimestepFraction, 1)
	setI(&c.Width, DefaultSize)
	setI(&c.Height, DefaultSize)
	setI(&c.Rank, DefaultRank)
	setF(&c.Alpha, float32(c.Rank))
	setF(&c.LR, DefaultLR)
	setF(&c.Beta1, DefaultBeta1)
	setF(&c.Beta2, DefaultBeta2)
	setF(&c.WeightDecay, DefaultWeightDecay)
	setF(&c.AdamEps, DefaultAdamEps)
	setF(&c.MaxGradNorm, DefaultMaxGradNorm)
	setD(&c.ClipRange, DefaultClipRange)
	setD(&c.AdvClip, DefaultAdvClip)
	setI(&c.StatBuffer, DefaultStatBuffer)
	if c.SamplesPerPrompt > 1 {
		setI(&c.StatMinCount, c.SamplesPerPrompt)
	}
	setI(&c.StatMinCount, DefaultStatMin)
	setD(&c.MaxLogRatio, DefaultMaxLogRatio)
	setI(&c.KeepCheckpoints, DefaultKeep)
	return c
}

// Validate reports the first problem with c (after WithDefaults).
func (c Config) Validate() error {
	bad := func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) }
	batches := 0
	if c.BatchSize > 0 {
		batches = c.SamplesPerEpoch / c.BatchSize
	}
	switch {
	case len(c.Prompts) == 0:
		return fmt.Errorf("ddpo: no prompts")
	case c.Epochs < 1:
		return fmt.Errorf("ddpo: %d epochs", c.Epochs)
	case c.BatchSize < 1 || c.SamplesPerEpoch < c.BatchSize || c.SamplesPerEpoch%c.BatchSize != 0:
		return fmt.Errorf("ddpo: %d samples per epoch is not a positive multiple of the batch size %d", c.SamplesPerEpoch, c.BatchSize)
	case c.SamplesPerPrompt < 0 || c.SamplesPerPrompt > 1 && c.SamplesPerEpoch%c.SamplesPerPrompt != 0:
		return fmt.Errorf("ddpo: %d samples per prompt does not divide the %d samples per epoch", c.SamplesPerPrompt, c.SamplesPerEpoch)
	case c.SamplesPerEpoch >= 1<<20:
		return fmt.Errorf("ddpo: %d samples per epoch is too many", c.SamplesPerEpoch)
	case c.AccumBatches < 0 || c.AccumBatches > 0 && batches%c.AccumBatches != 0:
		return fmt.Errorf("ddpo: gradient accumulation over %d batches does not divide the epoch's %d batches", c.AccumBatches, batches)
	case c.MicroBatch < 1:
		return fmt.Errorf("ddpo: micro-batch %d", c.MicroBatch)
	case c.InnerEpochs < 1:
		return fmt.Errorf("ddpo: %d inner epochs", c.InnerEpochs)
	case c.Steps < 1 || c.Steps > 1000:
		return fmt.Errorf("ddpo: %d sampling steps: must be between 1 and 1000", c.Steps)
	case !(c.Eta > 0 && c.Eta <= 1):
		return fmt.Errorf("ddpo: eta %g: must be in (0, 1] (the policy must be stochastic)", c.Eta)
	case !(c.Guidance >= 0 && c.Guidance <= 100):
		return fmt.Errorf("ddpo: guidance %g: must be between 0 and 100", c.Guidance)
	case !(c.EarlyFraction >= 0 && c.EarlyFraction < 1):
		return fmt.Errorf("ddpo: early-step fraction %g: must be in [0, 1)", c.EarlyFraction)
	case !(c.TimestepFraction > 0 && c.TimestepFraction <= 1):
		return fmt.Errorf("ddpo: timestep fraction %g: must be in (0, 1]", c.TimestepFraction)
	case c.Width < 8 || c.Height < 8 || c.Width%8 != 0 || c.Height%8 != 0 || c.Width > 4096 || c.Height > 4096:
		return fmt.Errorf("ddpo: image size %dx%d: width and height must be multiples of 8 (64 for SD 1.x) up to 4096", c.Width, c.Height)
	case c.Rank < 1:
		return fmt.Errorf("ddpo: LoRA rank %d", c.Rank)
	case !(c.LR > 0) || bad(float64(c.LR)) || !(c.Alpha > 0):
		return fmt.Errorf("ddpo: learning rate %g and alpha %g must be positive", c.LR, c.Alpha)
	case !(c.Beta1 >= 0 && c.Beta1 < 1 && c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("ddpo: Adam betas %g, %g must be in [0, 1)", c.Beta1, c.Beta2)
	case !(c.ClipRange > 0) || bad(c.ClipRange):
		return fmt.Errorf("ddpo: clip range %g must be positive", c.ClipRange)
	case !(c.AdvClip > 0) || !(c.MaxLogRatio > 0):
		return fmt.Errorf("ddpo: advantage clip %g and log-ratio bound %g must be positive", c.AdvClip, c.MaxLogRatio)
	case c.StatBuffer < 1 || c.StatMinCount < 0:
		return fmt.Errorf("ddpo: stat tracker buffer %d, minimum count %d", c.StatBuffer, c.StatMinCount)
	}
	return nil
}

// numTrain is the number of trained timesteps per sample, as
// ddpo-pytorch: int(Steps * TimestepFraction), at least 1.
func (c Config) numTrain() int {
	return min(c.window(), max(1, int(float64(c.Steps)*c.TimestepFraction)))
}

// window is the number of leading steps that training draws from.
func (c Config) window() int {
	if c.EarlyFraction <= 0 {
		return c.Steps
	}
	return max(1, int(float64(c.Steps)*c.EarlyFraction))
}

// accum is the number of batches per optimizer step.
func (c Config) accum() int {
	if c.AccumBatches == 0 {
		return c.SamplesPerEpoch / c.BatchSize
	}
	return c.AccumBatches
}

// fingerprint is the part of c that a resumed run must share with the
// run that wrote the checkpoint (everything that changes what is
// computed; Epochs may grow, the folder, checkpointing and micro-batch
// may change, which changes float rounding at most).
func (c Config) fingerprint(rewardName string) map[string]any {
	c.Epochs, c.WorkDir, c.KeepCheckpoints, c.NoGradCheckpointing, c.MicroBatch = 0, "", 0, false, 0
	b, _ := json.Marshal(c)
	m := map[string]any{}
	json.Unmarshal(b, &m)
	m["Reward"] = rewardName
	return m
}

// diffKeys lists the keys whose values differ between two fingerprints.
func diffKeys(a, b map[string]any) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range []map[string]any{a, b} {
		for k := range m {
			if seen[k] {
				continue
			}
			seen[k] = true
			x, _ := json.Marshal(a[k])
			y, _ := json.Marshal(b[k])
			if string(x) != string(y) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}
