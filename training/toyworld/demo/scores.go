package demo

import (
	"context"
	"fmt"
	"image"
	"sync"

	"github.com/instructbooth/instructbooth/training/evaluate"
	"github.com/instructbooth/instructbooth/training/reward"
	"github.com/instructbooth/instructbooth/training/toyworld"
)

// Names under which Register makes the toy world's scores available.
const (
	// RewardName is the toy alignment score as a DDPO reward ("--reward
	// toyworld"), ImageReward's role.
	RewardName = "toyworld"
	// AlignMetric is the toy alignment score as an evaluation metric
	// (text fidelity; CLIP-T's and ImageReward's role).
	AlignMetric = "toyworld-align"
	// FidelityMetric is the toy subject-fidelity score (DINO's role).
	FidelityMetric = "toyworld-fidelity"
)

var registerOnce sync.Once

// Register adds the toy world's reward to r (reward.Default when nil) and
// its two metrics to the evaluation metrics, so that every command that
// takes a reward or metric spec can use them with the toy model
// ("--reward toyworld", "--metrics toyworld-align,toyworld-fidelity").
// The metrics are registered once per process.
func Register(r *reward.Registry) {
	if r == nil {
		r = reward.Default
	}
	r.RegisterHelp(RewardName, "toy world image-text alignment from the pixels (the toy model's ImageReward)",
		func(arg string) (reward.Scorer, error) {
			if arg != "" {
				return nil, fmt.Errorf("reward %s takes no argument", RewardName)
			}
			return AlignReward{}, nil
		})
	registerOnce.Do(func() {
		evaluate.RegisterBuiltinMetric(AlignMetric, evaluate.TextMetric,
			"toy world alignment of the pixels with the prompt, in [0, 1] (no model file)",
			func(*evaluate.Env) (evaluate.Metric, func(), error) { return AlignScorer{}, func() {}, nil })
		evaluate.RegisterBuiltinMetric(FidelityMetric, evaluate.SubjectMetric,
			"toy world subject fidelity to the reference photos, a cosine in [-1, 1] (no model file)",
			func(*evaluate.Env) (evaluate.Metric, func(), error) { return FidelityScorer{}, func() {}, nil })
	})
}

// AlignReward is toyworld.Align as a reward.Scorer (for DDPO).
type AlignReward struct{}

// Name implements reward.Scorer.
func (AlignReward) Name() string { return RewardName }

// Score implements reward.Scorer: one alignment score per image.
func (AlignReward) Score(ctx context.Context, images []*image.NRGBA, prompts []string) ([]float64, error) {
	imgs := make([]image.Image, len(images))
	for i, im := range images {
		imgs[i] = im
	}
	return alignAll(ctx, prompts, imgs)
}

// AlignScorer is toyworld.Align as a metrics.Scorer (for evaluation).
type AlignScorer struct{}

// Name implements metrics.Scorer.
func (AlignScorer) Name() string { return AlignMetric }

// Score implements metrics.Scorer (prompts first).
func (AlignScorer) Score(ctx context.Context, prompts []string, imgs []image.Image) ([]float64, error) {
	return alignAll(ctx, prompts, imgs)
}

func alignAll(ctx context.Context, prompts []string, imgs []image.Image) ([]float64, error) {
	if len(prompts) != len(imgs) {
		return nil, fmt.Errorf("%s: %d prompts for %d images", AlignMetric, len(prompts), len(imgs))
	}
	out := make([]float64, len(imgs))
	for i, im := range imgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := toyworld.PixelsFromImage(im)
		if err != nil {
			return nil, fmt.Errorf("%s: image %d: %w", AlignMetric, i, err)
		}
		out[i] = toyworld.Align(p, prompts[i]).Score
	}
	return out, nil
}

// FidelityScorer scores images with toyworld.SubjectRef.Fidelity against
// the reference photos; a metrics.SubjectScorer.
type FidelityScorer struct{}

// Name implements metrics.SubjectScorer.
func (FidelityScorer) Name() string { return FidelityMetric }

// ScoreSubject implements metrics.SubjectScorer.
func (FidelityScorer) ScoreSubject(ctx context.Context, refs, imgs []image.Image) ([]float64, error) {
	var photos []*toyworld.Pixels
	for i, r := range refs {
		p, err := toyworld.PixelsFromImage(r)
		if err != nil {
			return nil, fmt.Errorf("%s: reference image %d: %w", FidelityMetric, i, err)
		}
		photos = append(photos, p)
	}
	ref, err := toyworld.NewSubjectRef(photos)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(imgs))
	for i, im := range imgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := toyworld.PixelsFromImage(im)
		if err != nil {
			return nil, fmt.Errorf("%s: image %d: %w", FidelityMetric, i, err)
		}
		out[i] = ref.Fidelity(p)
	}
	return out, nil
}
