package main

import (
	"context"
	"flag"
	"fmt"
	"image"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training/evaluate"
)

// evaluateCmd draws the same images (seed + prompt*N + image) for the
// base model and for the model with each --lora, scores them with
// --metrics, and writes results.md, summary.csv, per_prompt.csv,
// scores.csv, chart.png, grid.png and images/<run>/ into --out (their
// paths on stdout; progress with rate and ETA on stderr). Interrupt stops
// between sampling steps or scoring batches.
func evaluateCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("evaluate", stderr)
	// The model flags of generate, but --lora is evaluate's own (one run
	// per use).
	mfs := newFlags("evaluate", stderr)
	mf := addModelFlags(mfs, true)
	mfs.VisitAll(func(f *flag.Flag) {
		if f.Name != "lora" {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	var runs loraRuns
	fs.Var(&runs, "lora", "add a run with this LoRA (FILE[:SCALE]; several files joined by + form one run); repeatable")
	base := fs.Bool("base", true, "include the base model (no LoRA) as a run")
	subject := fs.String("subject", "", "folder of the subject's reference images (PNG/JPEG), for subject metrics")
	class := fs.String("class", "", "class noun of the subject (e.g. dog)")
	identifier := fs.String("identifier", "sks", "the subject's identifier token ('' for plain class prompts)")
	prompts := fs.String("prompts", "activity", "activity[:GROUP], dreambench[:live|object], or a prompt file (one per line, {} = identifier class)")
	metricSpec := fs.String("metrics", "", "NAME:PATH,... with NAME clip-t, pickscore, clip-i (and imagereward, dino where available)")
	metricsF16 := fs.Bool("metrics-f16", false, "keep the metric models' weights as binary16 on the GPU")
	perPrompt := fs.Int("images-per-prompt", 4, "images per prompt and run")
	seed := fs.Uint64("seed", 0, "base seed: image k of prompt p uses seed + p*N + k in every run")
	steps := fs.Int("steps", generate.DefaultSteps, "sampling steps")
	guidance := fs.Float64("guidance", generate.DefaultGuidance, "classifier-free guidance scale (<= 1: off)")
	negative := fs.String("negative", "", "negative prompt")
	width := fs.Int("width", generate.DefaultSize, "image width, a multiple of 64")
	height := fs.Int("height", generate.DefaultSize, "image height, a multiple of 64")
	sampler := fs.String("sampler", generate.DefaultSampler, "sampler: ddim, euler or dpm++2m")
	outDir := fs.String("out", "", "output folder")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case mf.model == "":
		return usagef("--model is required")
	case *class == "":
		return usagef("--class is required")
	case *outDir == "":
		return usagef("--out is required")
	case *metricSpec == "":
		return usagef("--metrics is required (%s)", strings.Join(evaluate.MetricNames(), "; "))
	case *perPrompt < 1:
		return usagef("--images-per-prompt %d: want at least 1", *perPrompt)
	case !*base && len(runs) == 0:
		return usagef("nothing to evaluate: --base=false and no --lora")
	}
	ps, err := evaluate.LoadPrompts(*prompts, *class)
	if err != nil {
		return usageError{err}
	}
	p := generate.Params{Negative: *negative, Steps: *steps, Guidance: float32(*guidance), Seed: *seed,
		Width: *width, Height: *height, Sampler: *sampler, Count: *perPrompt}
	if *guidance >= 0 && *guidance <= 1 {
		p.Guidance = 1
	}
	if err := p.WithDefaults().Validate(); err != nil {
		return usageError{err}
	}

	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stderr, "adapter: %s\n", e.Info)
	env := &evaluate.Env{Engine: e, F16Weights: *metricsF16}
	sources, needRefs, err := evaluate.ParseMetrics(*metricSpec, env)
	if err != nil {
		return usageError{err}
	}
	var refs []image.Image
	if needRefs {
		if *subject == "" {
			return usagef("--subject is required by the subject metrics")
		}
		if refs, err = evaluate.ReadReferenceImages(*subject); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}

	t0 := time.Now()
	pl, err := mf.load(e, sd.CompAll)
	if err != nil {
		return err
	}
	released := false
	defer func() {
		if !released {
			pl.Release()
		}
	}()
	fmt.Fprintf(stderr, "loaded %s (%s) in %.1fs; %d prompts x %d images per run\n",
		mf.model, pl.Source.Layout, time.Since(t0).Seconds(), len(ps), *perPrompt)
	var evRuns []evaluate.Run
	if *base {
		evRuns = append(evRuns, evaluate.Run{Name: "base"})
	}
	names := map[string]int{"base": 1}
	for _, r := range runs {
		name := r.name()
		if names[name]++; names[name] > 1 {
			name = fmt.Sprintf("%s-%d", name, names[name])
		}
		evRuns = append(evRuns, evaluate.Run{Name: name, Setup: r.setup(pl, stderr)})
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	pr := throttled(stderr)
	samples, err := evaluate.GenerateImages(ctx, evaluate.GenerateConfig{
		Components: components(pl, mf.name()), Runs: evRuns, Prompts: ps,
		Identifier: *identifier, Class: *class, ImagesPerPrompt: *perPrompt, Params: p, OutDir: *outDir,
	}, pr)
	if err != nil {
		return err
	}
	env.Tokenizer = pl.Tokenizer // for CLIP metric folders without a tokenizer
	pl.Release()                 // the metric models load one at a time after this
	released = true
	rep, err := evaluate.Score(ctx, samples, refs, sources, pr)
	if err != nil {
		return err
	}
	paths, err := rep.WriteFiles(*outDir)
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	if err != nil {
		return err
	}
	for _, run := range rep.Runs {
		var parts []string
		for _, m := range rep.Metrics {
			parts = append(parts, fmt.Sprintf("%s %s", m, rep.Summary(run, m)))
		}
		fmt.Fprintf(stderr, "%s: %s\n", run, strings.Join(parts, ", "))
	}
	ms := e.MemStats()
	fmt.Fprintf(stderr, "peak GPU memory: %s; total %.1fs\n", mib(ms.PeakDevice), time.Since(t0).Seconds())
	return nil
}

// throttled prints progress lines at most once a second (and the last
// of each phase).
func throttled(w io.Writer) func(evaluate.Progress) {
	var last time.Time
	return func(p evaluate.Progress) {
		if p.Done == p.Total || time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintln(w, p)
		}
	}
}

// loraRun is one --lora value: files with scales applied together.
type loraRun []loraFlag

// loraRuns collects repeated --lora flags.
type loraRuns []loraRun

func (r *loraRuns) String() string {
	var s []string
	for _, run := range *r {
		var parts []string
		for _, f := range run {
			parts = append(parts, f.String())
		}
		s = append(s, strings.Join(parts, "+"))
	}
	return strings.Join(s, " ")
}

func (r *loraRuns) Set(v string) error {
	var run loraRun
	for _, part := range strings.Split(v, "+") {
		var f loraFlag
		if err := f.Set(part); err != nil {
			return err
		}
		run = append(run, f)
	}
	*r = append(*r, run)
	return nil
}

// name is the files' stems joined by "+", with any scale other than 1.
func (r loraRun) name() string {
	var parts []string
	for _, f := range r {
		n := strings.TrimSuffix(filepath.Base(f.path), filepath.Ext(f.path))
		if f.scale != 1 {
			n += "x" + strconv.FormatFloat(float64(f.scale), 'g', -1, 32)
		}
		parts = append(parts, n)
	}
	return strings.Join(parts, "+")
}

// setup loads the run's LoRA files against the pipeline and attaches
// their adapters; several files in one run must adapt different layers.
func (r loraRun) setup(p *sd.Pipeline, stderr io.Writer) func() (func(), error) {
	return func() (func(), error) {
		var t lora.Targets
		if p.UNet != nil {
			t.UNet = p.UNet.W
		}
		if p.Text != nil {
			t.TextEncoder = p.Text.W.Root()
		}
		merged := &lora.Set{UNet: nn.Adapters{}, TextEncoder: nn.Adapters{}}
		var loaded []*lora.Loaded
		cleanup := func() {
			for _, l := range loaded {
				l.Release()
			}
		}
		for _, f := range r {
			l, err := lora.Load(f.path, t)
			if err != nil {
				cleanup()
				return nil, err
			}
			loaded = append(loaded, l)
			for name, a := range l.UNet {
				if _, dup := merged.UNet[name]; dup {
					cleanup()
					return nil, fmt.Errorf("%s: layer %s already has an adapter from another file of this run", f.path, name)
				}
				a.Scale *= f.scale
				merged.UNet[name] = a
			}
			for name, a := range l.TextEncoder {
				if _, dup := merged.TextEncoder[name]; dup {
					cleanup()
					return nil, fmt.Errorf("%s: layer %s already has an adapter from another file of this run", f.path, name)
				}
				a.Scale *= f.scale
				merged.TextEncoder[name] = a
			}
			fmt.Fprintf(stderr, "lora %s (%s): %d U-Net and %d text-encoder layers, scale x%g\n",
				f.path, l.Format, len(l.UNet), len(l.TextEncoder), f.scale)
		}
		merged.Attach(t)
		return func() {
			lora.Detach(t)
			cleanup()
		}, nil
	}
}
