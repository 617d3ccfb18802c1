package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/data"
	"github.com/instructbooth/instructbooth/training/dreambooth"
)

// personalizeCmd is DreamBooth: it trains a LoRA (or the whole U-Net) on
// the subject images of --images and writes the result to --out. State
// lives in a work folder beside the output (OUT.work/: checkpoints,
// validation images and, unless --class-cache says otherwise, the cached
// class images), so running the same command again after an interruption
// (Ctrl-C, a crash) resumes from the newest checkpoint, and a finished run
// can be extended by raising --steps.
//
// Outputs: LoRA mode writes a .safetensors LoRA in kohya (default) or
// diffusers layout with metadata (base model hash, rank, alpha, identifier,
// class noun, description, steps). Full mode writes an original-layout
// single-file checkpoint (--format single-file, default) or a diffusers
// unet folder (--format diffusers: config.json and the weights).
func personalizeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("personalize", stderr)
	mf := addModelFlags(fs, true)
	images := fs.String("images", "", "folder of subject images (PNG, JPEG, WebP)")
	class := fs.String("class", "", "class noun of the subject, e.g. dog")
	ident := fs.String("identifier", dreambooth.DefaultIdentifier, "rare token that names the subject")
	desc := fs.String("description", "", "optional words between identifier and class noun")
	mode := fs.String("mode", "lora", "lora (adapters on the attention layers) or full (every U-Net weight)")
	rank := fs.Int("rank", dreambooth.DefaultRank, "LoRA rank")
	alpha := fs.Float64("alpha", 0, "LoRA alpha (scale alpha/rank; default: the rank)")
	ff := fs.Bool("lora-ff", false, "also adapt the feed-forward layers")
	proj := fs.Bool("lora-proj", false, "also adapt the transformers' proj_in/proj_out")
	steps := fs.Int("steps", dreambooth.DefaultSteps, "training steps in all (raise it to extend a finished run)")
	classImages := fs.Int("class-images", dreambooth.DefaultClassImages, "class images for prior preservation")
	classSteps := fs.Int("class-steps", dreambooth.DefaultClassSteps, "sampling steps per class image")
	noPrior := fs.Bool("no-prior", false, "train without prior preservation (no class images)")
	res := fs.Int("resolution", dreambooth.DefaultResolution, "training resolution in pixels, a multiple of 64")
	seed := fs.Uint64("seed", 0, "seed of the run's random streams (keep it to resume)")
	lr := fs.Float64("lr", 0, "learning rate (default 1e-4 for lora, 2e-5 for full)")
	prior := fs.Float64("prior-weight", dreambooth.DefaultPriorWeight, "weight of the class images' loss")
	ckptEvery := fs.Int("checkpoint-every", dreambooth.DefaultCheckpoint, "steps between checkpoints")
	valEvery := fs.Int("validate-every", 0, "steps between validation images (0: none)")
	valPrompt := fs.String("validation-prompt", "", "prompt of the validation images (default: the instance prompt)")
	valSteps := fs.Int("validation-steps", dreambooth.DefaultClassSteps, "sampling steps of a validation image")
	out := fs.String("out", "", "output file (LoRA or single-file checkpoint) or folder (full mode, --format diffusers)")
	format := fs.String("format", "", "kohya or diffusers for a LoRA (default kohya); single-file or diffusers for full mode (default single-file)")
	classCache := fs.String("class-cache", "", "folder of class-image caches shared between runs (default: OUT.work/class-images)")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	switch {
	case mf.model == "":
		return usagef("--model is required")
	case *images == "":
		return usagef("--images is required")
	case strings.TrimSpace(*class) == "":
		return usagef("--class is required (the subject's class noun, e.g. dog)")
	case *out == "":
		return usagef("--out is required")
	case len(mf.loras) > 0:
		return usagef("--lora does not apply to personalize (it trains a new LoRA on the base model)")
	}
	m := dreambooth.Mode(*mode)
	switch m {
	case dreambooth.ModeLoRA:
		if *format == "" {
			*format = string(lora.Kohya)
		}
		if *format != string(lora.Kohya) && *format != string(lora.Diffusers) {
			return usagef("--format %q: a LoRA is written as kohya or diffusers", *format)
		}
	case dreambooth.ModeFull:
		if *format == "" {
			*format = "single-file"
		}
		if *format != "single-file" && *format != "diffusers" {
			return usagef("--format %q: a full fine-tune is written as single-file or diffusers", *format)
		}
		if explicit["f16-weights"] && mf.f16Weights {
			return usagef("full fine-tuning trains f32 weights: drop --f16-weights")
		}
		mf.f16Weights = false
	default:
		return usagef("--mode %q: want lora or full", *mode)
	}
	cfg := dreambooth.Config{
		Mode: m, Identifier: *ident, ClassNoun: *class, Description: *desc,
		Rank: *rank, Alpha: float32(*alpha), FeedForward: *ff, ProjInOut: *proj,
		LR: float32(*lr), Steps: *steps, Resolution: *res, Seed: *seed,
		NoPrior: *noPrior, PriorWeight: float32(*prior), ClassImages: *classImages, ClassSteps: *classSteps,
		CheckpointEvery: *ckptEvery, ValidateEvery: *valEvery, ValidationPrompt: *valPrompt, ValidationSteps: *valSteps,
	}
	if *noPrior {
		cfg.PriorWeight = 0
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}

	subject, skipped, err := data.LoadFolder(*images, cfg.Resolution)
	for _, s := range skipped {
		fmt.Fprintf(stderr, "skipped %s\n", s)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d subject images from %s\n", len(subject.Images), *images)
	work := filepath.Clean(*out) + ".work"
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
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
	fmt.Fprintf(stderr, "loaded %s (%s) in %.1fs\n", mf.model, pl.Source.Layout, time.Since(t0).Seconds())
	hash, err := dreambooth.BaseModelHash(pl.Source)
	if err != nil {
		return err
	}
	est := dreambooth.EstimateMemory(pl.UNet.Cfg, cfg, e.MemStats().Live[gpu.Weights])
	budget, src := dreambooth.DeviceMemory(e, 0)
	fmt.Fprintf(stderr, "%s training at %d px: about %s of GPU memory (%s); available %s (%s)\n",
		cfg.Mode, cfg.Resolution, size(est.Total), est, size(budget), src)
	fmt.Fprintf(stderr, "prompt %q", cfg.InstancePrompt())
	if !cfg.NoPrior {
		fmt.Fprintf(stderr, ", class prompt %q (%d images)", cfg.ClassPrompt(), cfg.ClassImages)
	}
	fmt.Fprintf(stderr, "; work folder %s\n", work)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	valDir := filepath.Join(work, "validation")
	job := dreambooth.Job{
		Config: cfg, Pipeline: pl, ModelName: mf.name(), BaseModelHash: hash, Subject: subject,
		WorkDir: work, ClassCache: *classCache,
		Progress:      func(s training.Status) { fmt.Fprintln(stderr, s) },
		ClassProgress: func(s training.Status) { fmt.Fprintf(stderr, "class images: %s\n", s) },
		Log:           func(s string) { fmt.Fprintln(stderr, s) },
		Validation: func(step int, imgs []generate.Image) {
			if err := os.MkdirAll(valDir, 0o755); err != nil {
				fmt.Fprintf(stderr, "validation images: %v\n", err)
				return
			}
			for i, im := range imgs {
				p := filepath.Join(valDir, fmt.Sprintf("step-%06d-%d.png", step, i))
				if err := generate.WritePNG(p, im.RGB, generate.Metadata(im.Params, mf.name())); err != nil {
					fmt.Fprintf(stderr, "validation image: %v\n", err)
					continue
				}
				fmt.Fprintf(stderr, "validation image %s\n", p)
			}
		},
	}
	r, err := dreambooth.Train(ctx, job)
	if err != nil {
		var ie *dreambooth.InterruptedError
		if errors.As(err, &ie) {
			fmt.Fprintf(stderr, "interrupted after step %d; run the same command again to resume\n", ie.Step)
		}
		return err
	}
	switch {
	case m == dreambooth.ModeLoRA:
		defer r.LoRA.Release()
		err = r.SaveLoRA(*out, lora.Format(*format))
	case *format == "diffusers":
		err = sd.SaveUNet(*out, pl.UNet, false, r.Meta.Map())
	default:
		err = sd.SaveSingleFile(*out, pl, false, r.Meta.Map())
	}
	if err != nil {
		return err
	}
	if n := len(r.Losses); n > 0 {
		fmt.Fprintf(stderr, "done: %d steps, final loss %.4f (mean of the last %d: %.4f)\n", r.Steps, r.Losses[n-1], min(n, 20), mean(r.Losses[max(0, n-20):]))
	}
	ms := e.MemStats()
	fmt.Fprintf(stderr, "peak GPU memory: %s (weights %s, activations %s, gradients %s, optimizer %s)\n",
		mib(ms.PeakDevice), mib(ms.Peak[gpu.Weights]), mib(ms.Peak[gpu.Activations]), mib(ms.Peak[gpu.Gradients]), mib(ms.Peak[gpu.OptimizerState]))
	fmt.Fprintln(stdout, *out)
	return nil
}

// size formats a byte count in GiB, or MiB below 1 GiB.
func size(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return mib(n)
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
