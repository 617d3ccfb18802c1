package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sd"
)

// generateCmd is text-to-image: it writes one PNG per image to --out
// (named <seed>-<prompt words>.png, never overwriting), prints each path
// on stdout, and reports progress with rate and ETA and the peak GPU
// memory on stderr. Interrupt (Ctrl-C) stops between steps. --model is a
// diffusers folder or a single-file checkpoint (see modelFlags); the
// weights are kept as binary16 on the GPU unless --f16-weights=false.
func generateCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", stderr)
	mf := addModelFlags(fs, true)
	prompt := fs.String("prompt", "", "text prompt")
	negative := fs.String("negative", "", "negative prompt (the unconditional text)")
	steps := fs.Int("steps", generate.DefaultSteps, "sampling steps")
	guidance := fs.Float64("guidance", generate.DefaultGuidance, "classifier-free guidance scale (<= 1: off)")
	seedStr := fs.String("seed", "", "seed of the first image (default: random); image i uses seed+i")
	width := fs.Int("width", generate.DefaultSize, "image width, a multiple of 64")
	height := fs.Int("height", generate.DefaultSize, "image height, a multiple of 64")
	count := fs.Int("count", 1, "number of images")
	sampler := fs.String("sampler", generate.DefaultSampler, "sampler: ddim, euler or dpm++2m")
	eta := fs.Float64("eta", 0, "DDIM eta (0 deterministic, 1 DDPM-like)")
	outDir := fs.String("out", ".", "output folder")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	if mf.model == "" {
		return usagef("--model is required")
	}
	seed := rand.Uint64() >> 32 // short random seeds are easier to retype
	if *seedStr != "" {
		s, err := strconv.ParseUint(*seedStr, 10, 64)
		if err != nil {
			return usagef("--seed %q: want an unsigned integer", *seedStr)
		}
		seed = s
	}
	p := generate.Params{Prompt: *prompt, Negative: *negative, Steps: *steps, Guidance: float32(*guidance),
		Seed: seed, Width: *width, Height: *height, Count: *count, Sampler: *sampler, Eta: float32(*eta)}
	if *guidance >= 0 && *guidance <= 1 {
		p.Guidance = 1 // guidance off (for Params, 0 would mean the default)
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return usageError{err}
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
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
	detach, err := mf.attachLoRA(pl, stderr)
	if err != nil {
		return err
	}
	defer detach()
	c := components(pl, mf.name())
	fmt.Fprintf(stderr, "loaded %s (%s) in %.1fs\n", mf.model, pl.Source.Layout, time.Since(t0).Seconds())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := generate.Generate(ctx, c, p, func(step, total int, elapsed time.Duration) {
		fmt.Fprintln(stderr, progressLine(step, total, elapsed))
	})
	if res != nil {
		if res.PromptTruncated {
			fmt.Fprintln(stderr, "warning: the prompt is longer than 75 tokens; the rest was ignored")
		}
		if res.NegativeTruncated {
			fmt.Fprintln(stderr, "warning: the negative prompt is longer than 75 tokens; the rest was ignored")
		}
		for _, im := range res.Images {
			path := outputPath(*outDir, im.Params.Seed, im.Params.Prompt)
			if werr := generate.WritePNG(path, im.RGB, generate.Metadata(im.Params, c.Name)); werr != nil {
				return werr
			}
			fmt.Fprintln(stdout, path)
		}
	}
	ms := e.MemStats()
	fmt.Fprintf(stderr, "peak GPU memory: %s (weights %s, activations %s)\n",
		mib(ms.PeakDevice), mib(ms.Peak[gpu.Weights]), mib(ms.Peak[gpu.Activations]))
	return err
}

// progressLine is "step 3/25  2.41 it/s  ETA 9s".
func progressLine(step, total int, elapsed time.Duration) string {
	rate := float64(step) / elapsed.Seconds()
	eta := time.Duration(float64(total-step) / rate * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("step %d/%d  %.2f it/s  ETA %s", step, total, rate, eta)
}

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// outputPath names an image by its seed and the first words of its prompt,
// adding -2, -3, ... when the name is taken.
func outputPath(dir string, seed uint64, prompt string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(prompt) {
		if b.Len() >= 40 {
			break
		}
		if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	base := strconv.FormatUint(seed, 10)
	if b.Len() > 0 {
		base += "-" + b.String()
	}
	path := filepath.Join(dir, base+".png")
	for i := 2; ; i++ {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return path
		}
		path = filepath.Join(dir, fmt.Sprintf("%s-%d.png", base, i))
	}
}
