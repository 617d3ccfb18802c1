package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/metrics"
	"github.com/instructbooth/instructbooth/training/ddpo"
	"github.com/instructbooth/instructbooth/training/toyworld"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
)

// demoCmd runs the toy world demo: DreamBooth, DDPO and the evaluation of
// the three models, resuming a run found in --out.
func demoCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	out := fs.String("out", "instructbooth-demo", "output folder (an interrupted demo resumes from it)")
	base := fs.String("base", "", "toy base model folder (default: the built-in model)")
	quick := fs.Bool("quick", false, "a few steps of every stage (checks the pipeline, shows no effect)")
	full := fs.Bool("full", false, "DDPO long enough to raise the reward (demo.FullOptions: about an hour on 2 CPU cores)")
	seed := fs.Uint64("seed", 1, "random seed of every stage")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	d := demo.DefaultOptions("", "")
	dbSteps := fs.Int("db-steps", d.DBSteps, "DreamBooth steps")
	dbLR := fs.Float64("db-lr", float64(d.DBLR), "DreamBooth learning rate")
	classImages := fs.Int("class-images", d.ClassImages, "prior-preservation class images")
	epochs := fs.Int("epochs", d.Epochs, "DDPO epochs")
	samples := fs.Int("samples", d.Samples, "DDPO samples per epoch")
	batch := fs.Int("batch", d.Batch, "DDPO batch size")
	steps := fs.Int("steps", d.Steps, "DDPO DDIM steps")
	lr := fs.Float64("lr", float64(d.LR), "DDPO learning rate")
	accum := fs.Int("accum", d.AccumBatches, "DDPO batches per optimizer step (0: one step per inner epoch)")
	inner := fs.Int("inner-epochs", d.InnerEpochs, "DDPO passes over each epoch's samples")
	perPrompt := fs.Int("per-prompt", d.PerPrompt, "DDPO samples of each drawn prompt per epoch (rewards compared within the prompt)")
	pooled := fs.Bool("pooled-std", d.PooledStd, "DDPO: divide centred rewards by the batch's pooled within-prompt std, not each prompt's own")
	stepBase := fs.Bool("step-baseline", d.StepBaseline, "DDPO: subtract a per-step baseline (the reward of the x_0 predicted at the step) from each trained step's advantage")
	early := fs.Float64("early-fraction", d.EarlyFraction, "DDPO trains only steps in the first share of each trajectory (0: all)")
	clip := fs.Float64("clip-range", d.ClipRange, "DDPO ratio clip range")
	tfrac := fs.Float64("timestep-fraction", d.TimestepFraction, "DDPO share of each trajectory's steps trained")
	evalImages := fs.Int("eval-images", d.EvalImages, "evaluation images per prompt and model")
	evalSteps := fs.Int("eval-steps", d.EvalSteps, "evaluation DDIM steps")
	measure := fs.Int("measure-gradient", 0, "instead of aligning: measure the signal and noise of DDPO's policy gradient on the DreamBooth model over this many samples")
	measureXT := fs.Int("measure-xt", 0, "instead of aligning: measure the share of the within-prompt reward variance that the initial noise decides, over this many samples")
	measureReward := fs.Int("measure-reward", 0, "instead of aligning: the mean reward on the training prompts over this many samples from fixed noise, of the DreamBooth model and of the policy in --at, paired")
	at := fs.String("at", "", "with the measurements: take them at the LoRA of this DDPO checkpoint (work/ddpo/ckpt-N.safetensors)")
	shared := fs.Int("shared-steps", 0, "with --measure-xt: the pairs also share the noise of this many first DDIM steps")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *base == "" {
		dir, err := toyworld.BuiltinModel("")
		if err != nil {
			return err
		}
		*base = dir
	}
	if *quick && *full {
		return usagef("--quick and --full exclude each other")
	}
	if *measureReward > 0 && *at == "" {
		return usagef("--measure-reward needs --at CHECKPOINT (the policy to compare with the DreamBooth model)")
	}
	o := demo.DefaultOptions(*out, *base)
	switch {
	case *quick:
		o = demo.QuickOptions(*out, *base)
	case *full:
		o = demo.FullOptions(*out, *base)
	}
	o.Seed = *seed
	// Flags given on the command line override the preset's settings.
	apply := map[string]func(){
		"db-steps": func() { o.DBSteps = *dbSteps }, "db-lr": func() { o.DBLR = float32(*dbLR) },
		"class-images": func() { o.ClassImages = *classImages }, "epochs": func() { o.Epochs = *epochs },
		"samples": func() { o.Samples = *samples }, "batch": func() { o.Batch = *batch }, "steps": func() { o.Steps = *steps },
		"lr": func() { o.LR = float32(*lr) }, "accum": func() { o.AccumBatches = *accum }, "inner-epochs": func() { o.InnerEpochs = *inner },
		"clip-range": func() { o.ClipRange = *clip }, "timestep-fraction": func() { o.TimestepFraction = *tfrac },
		"per-prompt": func() { o.PerPrompt = *perPrompt }, "pooled-std": func() { o.PooledStd = *pooled },
		"early-fraction": func() { o.EarlyFraction = *early }, "step-baseline": func() { o.StepBaseline = *stepBase },
		"eval-images": func() { o.EvalImages = *evalImages }, "eval-steps": func() { o.EvalSteps = *evalSteps },
	}
	fs.Visit(func(f *flag.Flag) {
		if set, ok := apply[f.Name]; ok {
			set()
		}
	})
	start := time.Now()
	o.Log = func(s string) {
		fmt.Fprintf(stdout, "[%s] %s\n", time.Since(start).Round(time.Second), s)
	}
	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stderr, "adapter: %s\nbase model: %s\n", e.Info, *base)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *measure > 0 || *measureXT > 0 || *measureReward > 0 {
		var last time.Time
		tick := func(what string) func(done, total int) {
			return func(done, total int) {
				if time.Since(last) >= 2*time.Second || done == total {
					o.Log(fmt.Sprintf("%s: %d/%d", what, done, total))
					last = time.Now()
				}
			}
		}
		return demo.WithTrainer(ctx, e, o, func(tr *ddpo.Trainer) error {
			if *measureReward > 0 {
				before, err := tr.MeasureReward(ctx, *measureReward, tick("reward of the DreamBooth model"))
				if err != nil {
					return err
				}
				if err := tr.LoadPolicy(*at); err != nil {
					return err
				}
				after, err := tr.MeasureReward(ctx, *measureReward, tick("reward of "+filepath.Base(*at)))
				if err != nil {
					return err
				}
				d := make([]float64, len(after))
				for i := range d {
					d[i] = after[i] - before[i]
				}
				b, a, p := metrics.Summarize(before), metrics.Summarize(after), metrics.Summarize(d)
				fmt.Fprintf(stdout, "\ntraining prompts, %d images from the same noise: DreamBooth %.3f ± %.3f, %s %.3f ± %.3f, paired difference %+.4f ± %.4f\n",
					len(d), b.Mean, b.StdErr, filepath.Base(*at), a.Mean, a.StdErr, p.Mean, p.StdErr)
				return nil
			}
			if *at != "" {
				if err := tr.LoadPolicy(*at); err != nil {
					return err
				}
			}
			if *measureXT > 0 {
				s, err := tr.MeasureInitialNoise(ctx, *measureXT, *shared, tick("shared noise"))
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "\nreward variance within a prompt %.4g, between images sharing x_T and the first %d steps' noise %.4g (%d pairs): the shared noise decides %.0f%%\n", s.Within, s.SharedSteps, s.Rest, s.Pairs, 100*s.Share)
			}
			if *measure > 0 {
				gn, err := tr.MeasureGradient(ctx, *measure, tick("gradient"))
				if err != nil {
					return err
				}
				printGradientNoise(stdout, gn)
			}
			return nil
		})
	}
	res, err := demo.Run(ctx, e, o)
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted; run the same command again to resume from %s", *out)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nheld-out prompts, %d images per prompt and model (%s):\n%s", o.EvalImages, res.Elapsed.Round(time.Second), demo.Summary(res.Report))
	if len(res.Rewards) > 0 {
		fmt.Fprintf(stdout, "DDPO mean reward per epoch: %.3f\n", res.Rewards)
	}
	fmt.Fprintf(stdout, "results: %s\n", filepath.Join(*out, demo.DirResults))
	return nil
}

// printGradientNoise writes a gradient measurement as a table.
func printGradientNoise(w io.Writer, g *ddpo.GradientNoise) {
	fmt.Fprintf(w, "\npolicy gradient over %d samples (%d batches of %d), reward %.3f ± %.3f\n", g.Samples, g.Groups, g.GroupSize, g.RewardMean, g.RewardStd)
	fmt.Fprintf(w, "%-10s %10s %10s %10s %14s %12s\n", "step (t)", "|mean|", "signal", "noise/1", "samples for 1", "half cos")
	row := func(name string, f ddpo.NoiseFigures) {
		fmt.Fprintf(w, "%-10s %10.3g %10.3g %10.3g %14.4g %12.3f\n", name, f.MeanNorm, f.Signal, f.Noise, f.SamplesNeeded, f.HalfCosine)
	}
	for i, f := range g.PerStep {
		row(fmt.Sprintf("%d (%d)", g.Steps[i], g.Timesteps[i]), f)
	}
	row("mean", g.Total)
	fmt.Fprintf(w, "\nmean gradient by adapted projection:\n%-12s %8s %10s %10s %10s %14s %12s\n", "projection", "params", "|mean|", "signal", "noise/1", "samples for 1", "half cos")
	for _, m := range g.ByModule {
		fmt.Fprintf(w, "%-12s %8d %10.3g %10.3g %10.3g %14.4g %12.3f\n", m.Module, m.Params, m.MeanNorm, m.Signal, m.Noise, m.SamplesNeeded, m.HalfCosine)
	}
}
