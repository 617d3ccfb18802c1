// Package evaluate runs InstructBooth's evaluation (the paper's Table 2):
// every run (the base model, the model with one or more LoRAs) draws the
// same images — fixed seeds per prompt and image — for a prompt set
// about the subject, each image is scored by text-image metrics (CLIP-T,
// PickScore, ImageReward) and subject metrics against reference images
// (DINO, CLIP-I), and the results are written as Markdown and CSV
// tables, a bar chart and an image grid.
//
// Generation and scoring are separate steps so that the diffusion model
// can be released before the metric models are loaded, one at a time.
package evaluate

import (
	"context"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"time"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/metrics"
)

// Run is one model variant to evaluate.
type Run struct {
	Name string
	// Setup prepares the shared components for this run (e.g. attaches its
	// LoRAs) and returns what undoes it; nil means the components as they
	// are.
	Setup func() (release func(), err error)
}

// Sample is one generated image.
type Sample struct {
	Run    string
	Prompt int    // index into the prompt set
	Text   string // the filled prompt
	Index  int    // image number within the prompt
	Seed   uint64
	Image  *image.NRGBA
	Path   string // the PNG written, relative to the output folder ("" if none)
}

// GenerateConfig describes the images to draw.
type GenerateConfig struct {
	Components generate.Components
	Runs       []Run
	Prompts    []Prompt
	// Identifier and Class fill the prompts ("sks", "dog").
	Identifier, Class string
	ImagesPerPrompt   int
	// Params are the sampling settings; Prompt and Count are set per
	// prompt, Seed is the base seed (see SeedFor).
	Params generate.Params
	// OutDir, when set, receives images/<run>/<prompt>-<image>.png.
	OutDir string
}

// SeedFor is the seed of image k of prompt p: base + p*perPrompt + k, the
// same in every run so runs compare like for like.
func SeedFor(base uint64, p, k, perPrompt int) uint64 {
	return base + uint64(p*perPrompt+k)
}

// Progress reports a phase's advance: generation counts sampling steps
// over all runs, scoring counts images over all runs and metrics.
type Progress struct {
	Phase       string // "generate" or "score"
	Run, Metric string
	Done, Total int
	Elapsed     time.Duration
}

// String is e.g. "generate base: 12/50 steps  3.10 it/s  ETA 12s".
func (p Progress) String() string {
	unit := "steps"
	what := p.Run
	if p.Phase == "score" {
		unit = "images"
		what = p.Metric + " " + p.Run
	}
	rate := float64(p.Done) / p.Elapsed.Seconds()
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	return fmt.Sprintf("%s %s: %d/%d %s  %.2f it/s  ETA %s", p.Phase, what, p.Done, p.Total, unit, rate, eta)
}

// GenerateImages draws ImagesPerPrompt images per prompt for every run.
// The images stay in memory (4 bytes a pixel: 1 MiB at 512x512) for
// scoring. A cancelled ctx stops between sampling steps and returns ctx.Err() with
// the samples finished so far.
func GenerateImages(ctx context.Context, cfg GenerateConfig, progress func(Progress)) ([]Sample, error) {
	if len(cfg.Runs) == 0 || len(cfg.Prompts) == 0 {
		return nil, fmt.Errorf("evaluate: no runs or no prompts")
	}
	if cfg.ImagesPerPrompt < 1 {
		return nil, fmt.Errorf("evaluate: %d images per prompt", cfg.ImagesPerPrompt)
	}
	seen := map[string]bool{}
	for _, r := range cfg.Runs {
		if r.Name == "" || seen[r.Name] || !safeName(r.Name) {
			return nil, fmt.Errorf("evaluate: run name %q is empty, repeated or not usable as a file name", r.Name)
		}
		seen[r.Name] = true
	}
	p := cfg.Params.WithDefaults()
	p.Count = cfg.ImagesPerPrompt
	if err := p.Validate(); err != nil {
		return nil, err
	}
	total := len(cfg.Runs) * len(cfg.Prompts) * cfg.ImagesPerPrompt * p.Steps
	done := 0
	start := time.Now()
	var out []Sample
	for _, run := range cfg.Runs {
		release := func() {}
		if run.Setup != nil {
			r, err := run.Setup()
			if err != nil {
				return out, fmt.Errorf("run %s: %w", run.Name, err)
			}
			release = r
		}
		for pi, pr := range cfg.Prompts {
			pp := p
			pp.Prompt = pr.Fill(cfg.Identifier, cfg.Class)
			pp.Seed = SeedFor(cfg.Params.Seed, pi, 0, cfg.ImagesPerPrompt)
			base := done
			res, err := generate.Generate(ctx, cfg.Components, pp, func(step, _ int, _ time.Duration) {
				done = base + step
				if progress != nil {
					progress(Progress{Phase: "generate", Run: run.Name, Done: done, Total: total, Elapsed: time.Since(start)})
				}
			})
			if res != nil {
				for k, im := range res.Images {
					s := Sample{Run: run.Name, Prompt: pi, Text: pp.Prompt, Index: k, Seed: im.Params.Seed, Image: im.RGB}
					if cfg.OutDir != "" {
						if werr := writeSample(cfg.OutDir, &s, generate.Metadata(im.Params, cfg.Components.Name+" "+run.Name)); werr != nil {
							release()
							return out, werr
						}
					}
					out = append(out, s)
				}
			}
			if err != nil {
				release()
				return out, err
			}
		}
		release()
	}
	return out, nil
}

func writeSample(dir string, s *Sample, text []generate.TextEntry) error {
	rel := filepath.Join("images", s.Run, fmt.Sprintf("%03d-%02d.png", s.Prompt, s.Index))
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := generate.WritePNG(path, s.Image, text); err != nil {
		return err
	}
	s.Path = rel
	return nil
}

// safeName accepts names usable as one path element.
func safeName(s string) bool {
	if s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if r == '/' || r == '\\' || r == 0 || r < ' ' {
			return false
		}
	}
	return true
}

// Metric is a metrics.Scorer (text-image) or a metrics.SubjectScorer
// (image vs the subject's reference images).
type Metric interface{ Name() string }

// MetricSource opens one metric's model when its scoring starts; the
// release it returns runs when it ends, so metric models are on the GPU
// one at a time.
type MetricSource struct {
	Name string
	Open func() (m Metric, release func(), err error)
}

// Static wraps an already loaded metric.
func Static(m Metric) MetricSource {
	return MetricSource{Name: m.Name(), Open: func() (Metric, func(), error) { return m, func() {}, nil }}
}

// ScoreChunk is the number of images handed to a scorer per call (the
// granularity of progress and cancellation).
const ScoreChunk = 16

// Score scores every sample with every metric. refs are the subject's
// reference images, needed by subject metrics only.
func Score(ctx context.Context, samples []Sample, refs []image.Image, sources []MetricSource, progress func(Progress)) (*Report, error) {
	r := NewReport(samples)
	total := len(samples) * len(sources)
	done := 0
	start := time.Now()
	for _, src := range sources {
		if _, dup := r.Scores[src.Name]; dup {
			return nil, fmt.Errorf("evaluate: metric %s given twice", src.Name)
		}
		m, release, err := src.Open()
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", src.Name, err)
		}
		vals, err := scoreAll(ctx, m, samples, refs, func(run string, n int) {
			done += n
			if progress != nil {
				progress(Progress{Phase: "score", Run: run, Metric: src.Name, Done: done, Total: total, Elapsed: time.Since(start)})
			}
		})
		release()
		if err != nil {
			return nil, fmt.Errorf("metric %s: %w", src.Name, err)
		}
		r.Metrics = append(r.Metrics, src.Name)
		r.Scores[src.Name] = vals
	}
	return r, nil
}

func scoreAll(ctx context.Context, m Metric, samples []Sample, refs []image.Image, step func(run string, n int)) ([]float64, error) {
	text, isText := m.(metrics.Scorer)
	subj, isSubj := m.(metrics.SubjectScorer)
	if !isText && !isSubj {
		return nil, fmt.Errorf("%T is neither a metrics.Scorer nor a metrics.SubjectScorer", m)
	}
	if !isText && len(refs) == 0 {
		return nil, fmt.Errorf("a subject metric needs reference images")
	}
	out := make([]float64, 0, len(samples))
	for i := 0; i < len(samples); i += ScoreChunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chunk := samples[i:min(i+ScoreChunk, len(samples))]
		imgs := make([]image.Image, len(chunk))
		texts := make([]string, len(chunk))
		for j, s := range chunk {
			imgs[j], texts[j] = s.Image, s.Text
		}
		var v []float64
		var err error
		if isText {
			v, err = text.Score(ctx, texts, imgs)
		} else {
			v, err = subj.ScoreSubject(ctx, refs, imgs)
		}
		if err != nil {
			return nil, err
		}
		if len(v) != len(chunk) {
			return nil, fmt.Errorf("%d scores for %d images", len(v), len(chunk))
		}
		out = append(out, v...)
		step(chunk[len(chunk)-1].Run, len(chunk))
	}
	return out, nil
}
