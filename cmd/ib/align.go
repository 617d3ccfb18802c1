package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/ddpo"
	"github.com/instructbooth/instructbooth/training/reward"
)

// alignCmd is RL alignment (DDPO) of a personalised model: it trains a
// LoRA on top of --model (plus --lora, the personalised LoRA, fused in at
// its scale) to maximise --reward on prompts "a <identifier> <class>
// <activity>" and "a <class> <activity>", printing each epoch's reward
// statistics on stdout and progress on stderr, and writes the LoRA to
// --out. Every epoch is checkpointed in --work (default OUT.work); running
// the same command again resumes there. Ctrl-C stops between steps.
func alignCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("align", stderr)
	mf := addModelFlags(fs, true)
	class := fs.String("class", "", "class noun of the subject (dog, backpack, ...)")
	identifier := fs.String("identifier", "", "the subject's identifier token (e.g. sks)")
	activities := fs.String("activities", "", "file of activities, one per line (default: InstructBooth-style activities for the class)")
	rewardSpec := fs.String("reward", "", "reward: "+strings.Join(reward.Names(), ", ")+", or a registered model reward NAME:PATH")
	epochs := fs.Int("epochs", ddpo.DefaultEpochs, "epochs (sample, then train)")
	samples := fs.Int("samples-per-epoch", ddpo.DefaultSamplesPerEpoch, "images sampled per epoch")
	perPrompt := fs.Int("samples-per-prompt", 0, "samples of each drawn prompt per epoch, whose rewards are standardised within the prompt (0: a prompt per sample)")
	pooled := fs.Bool("pooled-std", false, "divide centred rewards by the batch's pooled within-prompt std instead of each prompt's own")
	stepBase := fs.Bool("step-baseline", false, "subtract a per-step baseline (the reward of the x_0 predicted at the step's start) from each trained step's advantage")
	early := fs.Float64("early-fraction", 0, "train only steps in the first share of each trajectory, where layout is decided (0: all)")
	clip := fs.Float64("clip-range", ddpo.DefaultClipRange, "PPO ratio clip range")
	accum := fs.Int("accum", 0, "training batches per AdamW step (0: one step per epoch)")
	batch := fs.Int("batch", ddpo.DefaultBatchSize, "sampling and training batch size")
	micro := fs.Int("micro-batch", ddpo.DefaultMicroBatch, "trajectories per forward/backward pass of an update (bounds memory; same gradient)")
	steps := fs.Int("steps", ddpo.DefaultSteps, "DDIM steps (eta 1)")
	guidance := fs.Float64("guidance", ddpo.DefaultGuidance, "classifier-free guidance scale (<= 1: off)")
	fraction := fs.Float64("timestep-fraction", 1, "fraction of each sample's steps trained")
	rank := fs.Int("rank", ddpo.DefaultRank, "rank of the trained LoRA")
	lr := fs.Float64("lr", ddpo.DefaultLR, "AdamW learning rate")
	seedStr := fs.String("seed", "", "seed (default: random)")
	resolution := fs.Int("resolution", ddpo.DefaultSize, "image size in pixels (square, a multiple of 64)")
	out := fs.String("out", "", "output LoRA file (.safetensors)")
	format := fs.String("format", string(lora.Kohya), "LoRA layout: kohya, diffusers or peft")
	work := fs.String("work", "", "checkpoint folder (default: OUT.work)")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case mf.model == "":
		return usagef("--model is required")
	case *class == "":
		return usagef("--class is required")
	case *rewardSpec == "":
		return usagef("--reward is required (%s, or NAME:PATH)", strings.Join(reward.Names(), ", "))
	case *out == "":
		return usagef("--out is required")
	}
	f := lora.Format(*format)
	if f != lora.Kohya && f != lora.Diffusers && f != lora.PEFT {
		return usagef("--format %q: want kohya, diffusers or peft", *format)
	}
	if *work == "" {
		*work = *out + ".work"
	}
	acts := ddpo.DefaultActivities(*class)
	if *activities != "" {
		a, err := ddpo.ReadActivities(*activities)
		if err != nil {
			return usageError{err}
		}
		acts = a
	}
	prompts, err := ddpo.Prompts(*identifier, *class, acts)
	if err != nil {
		return usageError{err}
	}
	seed, err := alignSeed(*seedStr, *work)
	if err != nil {
		return err
	}
	g := float32(*guidance)
	if *guidance >= 0 && *guidance <= 1 {
		g = 1 // off (0 would mean the default)
	}
	model := mf.model
	for _, l := range mf.loras {
		model += " + " + l.String()
	}
	cfg := ddpo.Config{
		Model: model, Prompts: prompts, Epochs: *epochs, SamplesPerEpoch: *samples, BatchSize: *batch, MicroBatch: *micro, Steps: *steps,
		Guidance: g, TimestepFraction: *fraction, Width: *resolution, Height: *resolution, Rank: *rank,
		LR: float32(*lr), Seed: seed, WorkDir: *work, SamplesPerPrompt: *perPrompt, PooledStd: *pooled, StepBaseline: *stepBase, EarlyFraction: *early, AccumBatches: *accum, ClipRange: *clip,
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	scorer, err := reward.New(*rewardSpec)
	if err != nil {
		return usageError{err}
	}
	if c, ok := scorer.(io.Closer); ok {
		defer c.Close()
	}

	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stderr, "adapter: %s\n", e.Info)
	t0 := time.Now()
	pl, err := mf.load(e, sd.CompAll)
	if err != nil {
		return err
	}
	defer pl.Release()
	rewardEngine, rewardTokenizer = e, pl.Tokenizer
	defer func() { rewardEngine, rewardTokenizer = nil, nil }()
	release, err := fusePersonalLoRA(mf, pl, stderr)
	if err != nil {
		return err
	}
	defer release()
	fmt.Fprintf(stderr, "loaded %s (%s) in %.1fs\n", mf.model, pl.Source.Layout, time.Since(t0).Seconds())

	tr, err := ddpo.New(components(pl, mf.name()), scorer, cfg)
	if err != nil {
		return err
	}
	defer tr.Release()
	for _, s := range tr.Skipped {
		fmt.Fprintf(stderr, "skipped unreadable checkpoint: %v\n", s)
	}
	if tr.ResumedFrom != "" {
		fmt.Fprintf(stderr, "resuming from %s (%d of %d epochs done)\n", tr.ResumedFrom, tr.Epoch(), cfg.Epochs)
	}
	fmt.Fprintf(stderr, "%d prompts, reward %s, seed %d, %d epochs of %d samples, %d steps, LoRA rank %d, lr %g\n",
		len(prompts), scorer.Name(), seed, cfg.Epochs, cfg.SamplesPerEpoch, cfg.Steps, cfg.Rank, cfg.LR)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var last time.Time
	lastPhase := ""
	err = tr.Run(ctx, func(p ddpo.Progress) {
		if p.Phase == ddpo.PhaseEpoch {
			printEpoch(stdout, p.Stats, cfg.Epochs)
			return
		}
		if p.Phase != lastPhase || time.Since(last) >= time.Second {
			fmt.Fprintf(stderr, "epoch %d %s: %s\n", p.Epoch, p.Phase, p.Status)
			last, lastPhase = time.Now(), p.Phase
		}
	})
	ms := e.MemStats()
	fmt.Fprintf(stderr, "peak GPU memory: %s (weights %s, activations %s, gradients %s, optimizer %s)\n",
		mib(ms.PeakDevice), mib(ms.Peak[gpu.Weights]), mib(ms.Peak[gpu.Activations]), mib(ms.Peak[gpu.Gradients]), mib(ms.Peak[gpu.OptimizerState]))
	var nf *training.NotFiniteError
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted after %d of %d epochs; run the same command again to resume from %s", tr.Epoch(), cfg.Epochs, *work)
	case errors.As(err, &nf), errors.Is(err, ddpo.ErrRatio):
		return fmt.Errorf("%w (checkpoints in %s)", err, *work)
	case err != nil:
		return err
	}
	meta := lora.Meta{Identifier: *identifier, ClassNoun: *class,
		Description: fmt.Sprintf("DDPO alignment of %s for the reward %s", mf.name(), scorer.Name())}.Map()
	if err := tr.Save(*out, f, meta); err != nil {
		return err
	}
	fmt.Fprintln(stdout, *out)
	return nil
}

// alignSeed parses --seed; without one, a run resuming from work keeps
// the seed it was started with, and a fresh run draws one.
func alignSeed(s, work string) (uint64, error) {
	if s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, usagef("--seed %q: want an unsigned integer", s)
		}
		return v, nil
	}
	if v, ok, err := ddpo.SavedSeed(work); err != nil {
		return 0, err
	} else if ok {
		return v, nil
	}
	return rand.Uint64() >> 32, nil
}

// The model-backed rewards (imagereward:, clip:, pickscore:) load on the
// engine and with the tokenizer of the running align command.
var (
	rewardEngine    *gpu.Engine
	rewardTokenizer *clip.Tokenizer
)

func init() {
	reward.RegisterModels(reward.Default, reward.ModelEnv{
		Engine:    func() *gpu.Engine { return rewardEngine },
		Tokenizer: func() *clip.Tokenizer { return rewardTokenizer },
	})
}

// fusePersonalLoRA loads each --lora against the pipeline and fuses its
// U-Net adapters (scaled by the flag's SCALE) into the U-Net weights, so the
// RL LoRA has the U-Net to itself; text-encoder adapters are attached to
// the text encoder. The returned release detaches and frees them.
func fusePersonalLoRA(m *modelFlags, p *sd.Pipeline, stderr io.Writer) (func(), error) {
	t := lora.Targets{UNet: p.UNet.W, TextEncoder: p.Text.W.Root()}
	var sets []*lora.Loaded
	release := func() {
		if len(sets) > 0 {
			t.TextEncoder.AttachAll()
		}
		for _, l := range sets {
			l.Release()
		}
	}
	var text []nn.Adapters
	for _, lf := range m.loras {
		l, err := lora.Load(lf.path, t)
		if err != nil {
			release()
			return func() {}, err
		}
		sets = append(sets, l)
		for _, a := range l.UNet {
			a.Scale *= lf.scale
		}
		for _, a := range l.TextEncoder {
			a.Scale *= lf.scale
		}
		if err := ddpo.FuseLoRA(p.UNet.W, l.UNet); err != nil {
			release()
			return func() {}, fmt.Errorf("%s: %w", lf.path, err)
		}
		text = append(text, l.TextEncoder)
		fmt.Fprintf(stderr, "personalised lora %s (%s): %d U-Net layers fused, %d text-encoder layers attached, scale x%g\n",
			lf.path, l.Format, len(l.UNet), len(l.TextEncoder), lf.scale)
	}
	if len(text) > 0 {
		t.TextEncoder.AttachAll(text...)
	}
	return release, nil
}

// printEpoch writes an epoch's statistics: one summary line, then one
// line per prompt sampled.
func printEpoch(w io.Writer, s *ddpo.EpochStats, epochs int) {
	fmt.Fprintf(w, "epoch %d/%d  reward %.4f ± %.4f (%d samples)  approx_kl %.3g  clipfrac %.3g  loss %.4g  grad_norm %.4g  %.1fs\n",
		s.Epoch, epochs, s.RewardMean, s.RewardStd, len(s.Rewards), s.ApproxKL, s.ClipFrac, s.Loss, s.GradNorm, s.Seconds)
	for _, p := range s.PerPrompt {
		fmt.Fprintf(w, "    %.4f ± %.4f  n=%-2d %s\n", p.Mean, p.Std, p.N, p.Prompt)
	}
}
