package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/store"
)

// GenerateConfig is the configuration of a generate run (Run.Config).
type GenerateConfig struct {
	Prompt   string  `json:"prompt"`
	Negative string  `json:"negative_prompt,omitempty"`
	Seed     uint64  `json:"seed"` // image i uses Seed+i
	Steps    int     `json:"steps"`
	Guidance float64 `json:"guidance"`
	Count    int     `json:"count"`
	// Width and Height are the image size; 0 means the base model's
	// native size (NativeSize).
	Width   int     `json:"width,omitempty"`
	Height  int     `json:"height,omitempty"`
	Sampler string  `json:"sampler"`
	Eta     float64 `json:"eta,omitempty"`
	// CheckpointID is a LoRA checkpoint (personalized or aligned) applied
	// on top of the base model; empty for the base model alone.
	CheckpointID string `json:"checkpoint_id,omitempty"`
	// LoRAScale multiplies the checkpoint's own scale (0 means 1).
	LoRAScale float64 `json:"lora_scale,omitempty"`
}

// DefaultGenerateConfig is the Generate form's starting point.
func DefaultGenerateConfig() GenerateConfig {
	return GenerateConfig{Steps: generate.DefaultSteps, Guidance: generate.DefaultGuidance, Count: 4, Sampler: generate.DefaultSampler, LoRAScale: 1}
}

// generateJob draws Count images into the gallery, one at a time, so that
// each is stored (and shown) as soon as it is done and a resumed run
// continues with the next seed.
type generateJob struct {
	env JobEnv
	cfg GenerateConfig
}

// NewGenerateJob is the Factory of generate runs (Config: GenerateConfig).
func NewGenerateJob(env JobEnv) (Job, error) {
	var cfg GenerateConfig
	if err := json.Unmarshal(env.Run.Config, &cfg); err != nil {
		return nil, fmt.Errorf("generate: configuration: %w", err)
	}
	if cfg.Count < 1 {
		cfg.Count = 1
	}
	return &generateJob{env: env, cfg: cfg}, nil
}

func (j *generateJob) Run(ctx context.Context, report func(Progress)) error {
	run, cfg := j.env.Run, j.cfg
	pl, bm, err := j.env.Models.Base(run.BaseModelID)
	if err != nil {
		return err
	}
	if cfg.CheckpointID != "" {
		l, err := LoadCheckpointLoRA(j.env.DB, cfg.CheckpointID, pl)
		if err != nil {
			return err
		}
		scale := float32(cfg.LoRAScale)
		if scale == 0 {
			scale = 1
		}
		for _, a := range l.UNet {
			a.Scale *= scale
		}
		for _, a := range l.TextEncoder {
			a.Scale *= scale
		}
		t := Targets(pl)
		l.Attach(t)
		defer func() {
			lora.Detach(t)
			l.Release()
		}()
	}
	size := NativeSize(bm.Path)
	p := generate.Params{
		Prompt: cfg.Prompt, Negative: cfg.Negative, Steps: cfg.Steps, Guidance: float32(cfg.Guidance),
		Width: cfg.Width, Height: cfg.Height, Sampler: cfg.Sampler, Eta: float32(cfg.Eta), Count: 1,
	}
	if p.Width == 0 {
		p.Width = size
	}
	if p.Height == 0 {
		p.Height = size
	}
	if cfg.Guidance >= 0 && cfg.Guidance <= 1 {
		p.Guidance = 1 // off (0 would mean the default)
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return err
	}
	// A resumed run keeps the images it stored and continues after them.
	done, err := j.env.DB.Gallery(store.GalleryFilter{RunID: run.ID})
	if err != nil {
		return err
	}
	total := cfg.Count * p.Steps
	report(Progress{Step: len(done) * p.Steps, Total: total})
	modelName := bm.Name
	if modelName == "" {
		modelName = filepath.Base(bm.Path)
	}
	for i := len(done); i < cfg.Count; i++ {
		ip := p
		ip.Seed = cfg.Seed + uint64(i)
		res, err := generate.Generate(ctx, components(pl, modelName), ip, func(step, _ int, _ time.Duration) {
			report(Progress{Step: i*p.Steps + step, Total: total})
		})
		if err != nil {
			return err
		}
		img := res.Images[0]
		var buf bytes.Buffer
		if err := generate.EncodePNG(&buf, img.RGB, generate.Metadata(img.Params, modelName)); err != nil {
			return err
		}
		g := store.GalleryImage{
			RunID: run.ID, SubjectID: run.SubjectID, Prompt: ip.Prompt, NegativePrompt: ip.Negative,
			Seed: int64(ip.Seed), BaseModelID: bm.ID, CheckpointID: cfg.CheckpointID,
			Sampler: store.Sampler{Name: ip.Sampler, Steps: ip.Steps, Guidance: float64(ip.Guidance), Eta: float64(ip.Eta), Width: ip.Width, Height: ip.Height},
		}
		if err := j.env.DB.AddGalleryImage(&g, buf.Bytes()); err != nil {
			return err
		}
		report(Progress{Step: (i + 1) * p.Steps, Total: total, Preview: img.RGB})
	}
	return nil
}

// components are what generation needs from a loaded pipeline.
func components(p *sd.Pipeline, name string) generate.Components {
	return generate.FromPipeline(p, name)
}

// promptFor fills a subject's identifier and class noun into a prompt
// template: "{id}" and "{class}" ("a photo of {id} {class}").
func promptFor(tmpl string, s store.Subject) string {
	return strings.NewReplacer("{id}", s.Identifier, "{class}", s.Class).Replace(tmpl)
}
