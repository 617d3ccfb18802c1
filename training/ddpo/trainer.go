package ddpo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/reward"
)

// Sample is one image's trajectory from an epoch's sampling.
type Sample struct {
	Prompt int // index into Config.Prompts
	// Latents are the K+1 latents (C*h*w values each, CHW): [0] = x_T,
	// [k+1] = after DDIM step k.
	Latents [][]float32
	// LogProbs[k] is the sampling policy's log-probability of step k.
	LogProbs []float32
	Reward   float64
	// With Config.StepBaseline: StepRewards[k] is the reward of the x_0
	// predicted at step k's start, and StepAdv[k] the step's advantage
	// after the baseline (set before training).
	StepRewards, StepAdv []float64
}

// PromptStats are one prompt's rewards in an epoch.
type PromptStats struct {
	Prompt    string
	N         int
	Mean, Std float64 // population standard deviation
}

// EpochStats summarise one epoch.
type EpochStats struct {
	Epoch                 int       // 1-based
	Rewards               []float64 // per sample, in sampling order
	RewardMean, RewardStd float64   // over the epoch's samples (population std)
	PerPrompt             []PromptStats
	// Means over every trained (batch, timestep) of the surrogate loss,
	// ddpo-pytorch's approx KL 0.5 (log ratio)^2 and the clipped fraction.
	Loss, ApproxKL, ClipFrac float64
	GradNorm                 float64 // mean gradient norm (before clipping) of the updates
	Updates                  int     // AdamW steps taken
	Seconds                  float64 // wall time
}

// Phases reported through Progress.
const (
	PhaseSampling = "sampling" // generating and scoring the epoch's images
	PhaseTraining = "training" // policy-gradient updates
	PhaseEpoch    = "epoch"    // an epoch finished (Stats is set)
)

// Progress is a snapshot passed to Run's callback. Status counts work
// units (one DDIM step of a sampling batch, one trained timestep of a
// training batch) over the whole run; Metrics hold running means while
// training and the epoch's figures at PhaseEpoch.
type Progress struct {
	training.Status
	Epoch int    // 1-based epoch in progress (or just finished)
	Phase string // PhaseSampling, PhaseTraining or PhaseEpoch
	Stats *EpochStats
}

// Trainer runs DDPO on one model. It owns the trainable LoRA (attached to
// the U-Net while the trainer lives), its optimizer and the reward
// statistics. The models in Components are not modified except by the
// attached adapters; a personalised LoRA must be fused first (FuseLoRA),
// since the U-Net has one adapter slot.
type Trainer struct {
	cfg    Config
	c      generate.Components
	e      *gpu.Engine
	scorer reward.Scorer

	adapters  nn.Adapters
	opt       *gpu.AdamW
	tracker   *StatTracker
	uncond    *gpu.Tensor // [1, L, D]
	epoch     int         // epochs done
	history   []EpochStats
	broken    error // set when Run stopped mid-epoch
	pairNoise int   // sampling: samples 2m and 2m+1 share the first pairNoise noise draws (x_T, then the steps' z)

	// ResumedFrom is the checkpoint New resumed from ("" for a fresh
	// run); Skipped are unreadable newer checkpoints passed over.
	ResumedFrom string
	Skipped     []error
}

// Stream purposes (training.Stream) of the random draws of an epoch.
const (
	purposePrompts   = 1
	purposeShuffle   = 2
	purposeTimesteps = 3
)

// noiseKey is mixed into the seed of the sampling noise, so that it is
// independent of the other draws.
const noiseKey = 0x6464706f6e6f6973

// noiseStream is generate.Noise's stream of sample i's noise at sampling
// step k of epoch ep (k = 0: x_T; k+1: the z of DDIM step k).
func noiseStream(ep, i, k int) uint64 { return uint64(ep)<<40 | uint64(i)<<20 | uint64(k) }

// New prepares a run: it validates cfg (after WithDefaults), creates the
// LoRA (rank cfg.Rank on lora.AttentionModules, zero Up so the policy
// starts as the model) and attaches it to the U-Net, and resumes from
// cfg.WorkDir's newest checkpoint when there is one (which must come from
// a run with the same settings and reward; Epochs may differ).
func New(c generate.Components, scorer reward.Scorer, cfg Config) (*Trainer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if c.Tokenizer == nil || c.Text == nil || c.UNet == nil || c.VAE == nil || c.Schedule == nil {
		return nil, fmt.Errorf("ddpo: incomplete model (tokenizer, text encoder, U-Net, VAE and schedule are all needed)")
	}
	if scorer == nil {
		return nil, fmt.Errorf("ddpo: no reward")
	}
	if m := c.SizeMultiple(); cfg.Width%m != 0 || cfg.Height%m != 0 {
		return nil, fmt.Errorf("ddpo: image size %dx%d: this model needs multiples of %d", cfg.Width, cfg.Height, m)
	}
	e := c.UNet.W.E
	t := &Trainer{cfg: cfg, c: c, e: e, scorer: scorer, tracker: cfg.newTracker()}
	mods := lora.AttentionModules(c.UNet.W)
	if len(mods) == 0 {
		return nil, fmt.Errorf("ddpo: the U-Net has no attention projections to adapt")
	}
	a, err := lora.New(c.UNet.W, mods, cfg.Rank, cfg.Alpha, int64(cfg.Seed))
	if err != nil {
		return nil, err
	}
	t.adapters = a
	params := t.Params()
	t.opt = e.NewAdamW(params, cfg.LR)
	t.opt.Beta1, t.opt.Beta2, t.opt.Eps, t.opt.WeightDecay, t.opt.MaxGradNorm = cfg.Beta1, cfg.Beta2, cfg.AdamEps, cfg.WeightDecay, cfg.MaxGradNorm
	if t.uncond, err = t.encode([]string{""}); err != nil {
		t.Release()
		return nil, err
	}
	c.UNet.W.Attach(t.adapters)
	if cfg.WorkDir != "" {
		if err := t.resume(); err != nil {
			t.Release()
			return nil, err
		}
	}
	return t, nil
}

// checkpointState is the JSON state of a checkpoint.
type checkpointState struct {
	Epoch    int
	Seed     uint64 // also in Settings, but exact here (JSON numbers there are float64)
	Settings map[string]any
	Tracker  TrackerState
	History  []EpochStats
}

func (t *Trainer) resume() error {
	path, step, skipped := training.LatestCheckpoint(t.cfg.WorkDir)
	t.Skipped = skipped
	if path == "" {
		return nil
	}
	var st checkpointState
	if _, err := training.LoadCheckpoint(path, t.Params(), t.opt, &st); err != nil {
		return err
	}
	d := diffKeys(st.Settings, t.cfg.fingerprint(t.scorer.Name()))
	if st.Seed != t.cfg.Seed && (len(d) == 0 || d[len(d)-1] != "Seed") {
		d = append(d, "Seed")
	}
	if len(d) > 0 {
		return fmt.Errorf("ddpo: %s was written by a run with other settings (%s differ); resume with the same settings or use another work folder", path, strings.Join(d, ", "))
	}
	if st.Epoch != step || len(st.History) != step {
		return fmt.Errorf("ddpo: %s: inconsistent checkpoint (step %d, state epoch %d, %d history entries)", path, step, st.Epoch, len(st.History))
	}
	if err := t.tracker.SetState(st.Tracker); err != nil {
		return fmt.Errorf("ddpo: %s: %w", path, err)
	}
	t.epoch, t.history, t.ResumedFrom = step, st.History, path
	return nil
}

// SavedSeed returns the seed of the run checkpointed in dir (ok false
// when dir holds no readable checkpoint), so that a resumed run can reuse
// it without being told.
func SavedSeed(dir string) (seed uint64, ok bool, err error) {
	path, _, _ := training.LatestCheckpoint(dir)
	if path == "" {
		return 0, false, nil
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	var st checkpointState
	if err := json.Unmarshal([]byte(f.Metadata["state"]), &st); err != nil {
		return 0, false, fmt.Errorf("%s: state: %w", path, err)
	}
	return st.Seed, true, nil
}

// Config returns the run's settings (with defaults).
func (t *Trainer) Config() Config { return t.cfg }

// Epoch returns the number of epochs done (including resumed ones).
func (t *Trainer) Epoch() int { return t.epoch }

// History returns the statistics of the epochs done.
func (t *Trainer) History() []EpochStats { return append([]EpochStats(nil), t.history...) }

// LoRA returns the trainable adapters (U-Net only).
func (t *Trainer) LoRA() lora.Set { return lora.Set{UNet: t.adapters} }

// Params returns the LoRA's tensors (lora.Set.Params order).
func (t *Trainer) Params() []*gpu.Tensor { return (&lora.Set{UNet: t.adapters}).Params() }

// Optimizer returns the AdamW over Params.
func (t *Trainer) Optimizer() *gpu.AdamW { return t.opt }

// Save writes the trained LoRA to path in format f with meta plus the
// run's description (reward, epochs).
func (t *Trainer) Save(path string, f lora.Format, meta map[string]string) error {
	md := map[string]string{}
	for k, v := range meta {
		md[k] = v
	}
	md["ib_ddpo_reward"] = t.scorer.Name()
	md["ib_ddpo_epochs"] = strconv.Itoa(t.epoch)
	md[lora.KeySteps] = strconv.Itoa(t.opt.Steps())
	return lora.Save(path, lora.Set{UNet: t.adapters}, f, md)
}

// Release detaches the LoRA from the U-Net and frees it, the optimizer
// state and the trainer's tensors; a Scorer implementing io.Closer is not
// closed (the caller owns it).
func (t *Trainer) Release() {
	if t.adapters != nil {
		t.c.UNet.W.Attach(nil)
		(&lora.Set{UNet: t.adapters}).Release()
		t.adapters = nil
	}
	if t.opt != nil {
		t.opt.Release()
		t.opt = nil
	}
	t.uncond.Release()
}

// Run trains until Config.Epochs epochs are done, calling progress (may
// be nil) as work proceeds, and checkpoints after every epoch. ctx is
// checked between steps: a cancelled run returns ctx.Err() and the last
// checkpoint stays. A non-finite reward, log-probability, loss or gradient
// returns a *training.NotFiniteError (its Step is the 1-based epoch), an
// exploding log-probability ratio
// an error wrapping ErrRatio; neither writes a checkpoint. After an error
// the trainer is mid-epoch and refuses to run again: make a new one on the
// same WorkDir to resume.
func (t *Trainer) Run(ctx context.Context, progress func(Progress)) error {
	if t.broken != nil {
		return fmt.Errorf("ddpo: the trainer stopped mid-epoch (%v); create a new one to resume from the last checkpoint", t.broken)
	}
	err := t.run(ctx, progress)
	if err != nil {
		t.broken = err
	}
	return err
}

// ErrRatio is wrapped by the error that stops a run whose log-probability
// ratio exceeded Config.MaxLogRatio.
var ErrRatio = errors.New("log-probability ratio exploded")

func (t *Trainer) unitsPerEpoch() int {
	cfg := t.cfg
	nb := cfg.SamplesPerEpoch / cfg.BatchSize
	return nb*cfg.Steps + cfg.InnerEpochs*nb*cfg.numTrain()
}

func (t *Trainer) run(ctx context.Context, progress func(Progress)) error {
	cfg := t.cfg
	per := t.unitsPerEpoch()
	meter := training.NewMeter(t.epoch*per, cfg.Epochs*per)
	for t.epoch < cfg.Epochs {
		ep := t.epoch
		start := time.Now()
		done := ep * per
		report := func(phase string, metrics map[string]float64, st *EpochStats) {
			if progress != nil {
				progress(Progress{Status: meter.Update(done, metrics), Epoch: ep + 1, Phase: phase, Stats: st})
			}
		}
		tick := func(phase string, metrics map[string]float64) {
			done++
			report(phase, metrics, nil)
		}
		report(PhaseSampling, nil, nil)
		samples, err := t.sampleEpoch(ctx, ep, func() { tick(PhaseSampling, nil) })
		if err != nil {
			return err
		}
		adv, err := t.advantages(t.tracker, samples)
		if err != nil {
			return err
		}
		st := epochRewards(ep, cfg.Prompts, samples)
		if err := t.trainEpoch(ctx, ep, samples, adv, &st, func(m map[string]float64) { tick(PhaseTraining, m) }); err != nil {
			return err
		}
		st.Seconds = time.Since(start).Seconds()
		t.epoch++
		t.history = append(t.history, st)
		if cfg.WorkDir != "" {
			state := checkpointState{Epoch: t.epoch, Seed: cfg.Seed, Settings: cfg.fingerprint(t.scorer.Name()), Tracker: t.tracker.State(), History: t.history}
			if _, err := training.SaveCheckpoint(cfg.WorkDir, t.epoch, t.Params(), t.opt, state, cfg.KeepCheckpoints); err != nil {
				return err
			}
		}
		report(PhaseEpoch, map[string]float64{
			"reward_mean": st.RewardMean, "reward_std": st.RewardStd, "loss": st.Loss,
			"approx_kl": st.ApproxKL, "clipfrac": st.ClipFrac, "grad_norm": st.GradNorm,
		}, &st)
	}
	return nil
}

// epochRewards fills the reward part of an epoch's statistics.
func epochRewards(ep int, prompts []string, samples []*Sample) EpochStats {
	st := EpochStats{Epoch: ep + 1}
	by := make([][]float64, len(prompts))
	for _, s := range samples {
		st.Rewards = append(st.Rewards, s.Reward)
		by[s.Prompt] = append(by[s.Prompt], s.Reward)
	}
	st.RewardMean, st.RewardStd = meanStd(st.Rewards)
	for i, r := range by {
		if len(r) > 0 {
			m, sd := meanStd(r)
			st.PerPrompt = append(st.PerPrompt, PromptStats{Prompt: prompts[i], N: len(r), Mean: m, Std: sd})
		}
	}
	return st
}

// encode returns the text conditioning of prompts [N, L, D], computed
// without gradients, owned by the caller.
func (t *Trainer) encode(prompts []string) (*gpu.Tensor, error) {
	e := t.e
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		a, _ := t.c.Tokenizer.EncodeSD(p)
		ids[i] = a[:]
	}
	var out *gpu.Tensor
	var err error
	e.NoGrad(func() {
		s := e.Scope()
		var o *clip.TextOutput
		if o, err = t.c.Text.Forward(ids); err != nil {
			s.Close()
			return
		}
		out = o.Last
		s.Close(out)
	})
	return out, err
}

// conditioning returns the U-Net's text batch for prompts: [uncond^N;
// cond] ([2N, L, D]) with guidance, else cond ([N, L, D]); and cond alone.
func (t *Trainer) conditioning(prompts []string) (ctx, cond, uncond *gpu.Tensor, err error) {
	e := t.e
	if cond, err = t.encode(prompts); err != nil {
		return nil, nil, nil, err
	}
	n := len(prompts)
	e.NoGrad(func() {
		e.Outside(func() {
			us := make([]*gpu.Tensor, n)
			for i := range us {
				us[i] = t.uncond
			}
			uncond = e.Concat(0, us...)
			if t.cfg.Guidance > 1 {
				ctx = e.Concat(0, uncond, cond)
			} else {
				ctx = cond.Detach()
			}
		})
	})
	return ctx, cond, uncond, nil
}
