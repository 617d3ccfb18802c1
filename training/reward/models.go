package reward

import (
	"context"
	"fmt"
	"image"
	"os"
	"sync"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/imagereward"
	"github.com/instructbooth/instructbooth/model/metrics"
)

// ModelEnv supplies what the model-backed rewards load with, when they are
// first used: the engine, and a CLIP tokenizer for CLIP folders that carry
// none (the diffusion model's own: the same vocabulary). Either function
// may be called only once the program has opened its engine.
type ModelEnv struct {
	Engine    func() *gpu.Engine
	Tokenizer func() *clip.Tokenizer // may be nil or return nil
}

// RegisterModels adds the model-backed rewards to r:
//
//	imagereward:PATH  ImageReward's normalised reward (ImageReward.pt or .safetensors)
//	clip:PATH         CLIP-T, the cosine of CLIP image and prompt embeddings (a CLIPModel folder)
//	pickscore:PATH    PickScore, exp(logit_scale) x cosine (the PickScore_v1 CLIPModel folder)
//
// A spec is checked (the path must exist) when parsed; the model loads on
// the first Score, on env's engine, and is freed by Close.
func RegisterModels(r *Registry, env ModelEnv) {
	r.RegisterHelp("imagereward", "ImageReward's reward (imagereward:PATH to ImageReward.pt or .safetensors)",
		lazy("imagereward", env, func(e *gpu.Engine, path string) (metrics.Scorer, func(), error) {
			m, err := imagereward.Load(e, path, imagereward.Options{})
			if err != nil {
				return nil, nil, err
			}
			return metrics.NewImageReward(m), m.Release, nil
		}))
	for _, name := range []string{"clip", "pickscore"} {
		name := name
		r.RegisterHelp(name, name+" score (name:PATH to a transformers CLIPModel folder)",
			lazy(name, env, func(e *gpu.Engine, path string) (metrics.Scorer, func(), error) {
				m, err := clip.LoadModel(e, path, clip.LoadOptions{})
				if err != nil {
					return nil, nil, err
				}
				tok := m.Tokenizer
				if tok == nil && env.Tokenizer != nil {
					tok = env.Tokenizer()
				}
				if tok == nil {
					m.Release()
					return nil, nil, fmt.Errorf("%s: the CLIP folder has no tokenizer", path)
				}
				if name == "pickscore" {
					return metrics.NewPickScore(m, tok), m.Release, nil
				}
				return metrics.NewCLIPT(m, tok), m.Release, nil
			}))
	}
}

func lazy(name string, env ModelEnv, load func(*gpu.Engine, string) (metrics.Scorer, func(), error)) Constructor {
	return func(path string) (Scorer, error) {
		if path == "" {
			return nil, fmt.Errorf("reward %s needs a model path (%s:PATH)", name, name)
		}
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("reward %s: %w", name, err)
		}
		return &modelScorer{name: name, path: path, env: env, load: load}, nil
	}
}

// modelScorer adapts a metrics.Scorer, loaded on first use, to Scorer.
type modelScorer struct {
	name, path string
	env        ModelEnv
	load       func(*gpu.Engine, string) (metrics.Scorer, func(), error)

	once    sync.Once
	err     error
	m       metrics.Scorer
	release func()
}

func (s *modelScorer) Name() string { return s.name }

func (s *modelScorer) Score(ctx context.Context, images []*image.NRGBA, prompts []string) ([]float64, error) {
	if err := check(s.name, images, prompts); err != nil {
		return nil, err
	}
	s.once.Do(func() {
		var e *gpu.Engine
		if s.env.Engine != nil {
			e = s.env.Engine()
		}
		if e == nil {
			s.err = fmt.Errorf("reward %s: no GPU engine to load %s on", s.name, s.path)
			return
		}
		s.m, s.release, s.err = s.load(e, s.path)
	})
	if s.err != nil {
		return nil, s.err
	}
	imgs := make([]image.Image, len(images))
	for i, im := range images {
		imgs[i] = im
	}
	return s.m.Score(ctx, prompts, imgs)
}

// Close frees the model, if it was loaded.
func (s *modelScorer) Close() error {
	if s.release != nil {
		s.release()
		s.release = nil
	}
	return nil
}
