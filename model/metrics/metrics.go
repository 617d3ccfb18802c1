// Package metrics holds the evaluation metrics of InstructBooth's Table 2
// and their aggregation: CLIP-T (prompt-image cosine), PickScore
// (exp(logit_scale) x cosine of the PickScore CLIP), subject fidelity
// (mean cosine of image embeddings, DINO's [CLS] or CLIP's, between
// generated and reference images), ImageReward through the same Scorer
// interface; means with standard errors and per-prompt breakdowns.
//
// Scorers work on decoded images (image.Image) and do their own
// preprocessing, so an evaluation can mix models with different inputs.
package metrics

import (
	"context"
	"fmt"
	"image"
	"math"
)

// Scorer scores images against their prompts (CLIP-T, PickScore,
// ImageReward): Score returns one value per pair (prompts[i], imgs[i]).
// Implementations batch internally and stop with ctx's error between
// batches.
type Scorer interface {
	Name() string
	Score(ctx context.Context, prompts []string, imgs []image.Image) ([]float64, error)
}

// SubjectScorer scores generated images against reference images of the
// subject (DINO or CLIP-I fidelity): one value per generated image.
type SubjectScorer interface {
	Name() string
	ScoreSubject(ctx context.Context, refs, imgs []image.Image) ([]float64, error)
}

// ImageEmbedder maps images to embeddings, one row per image (DINO's [CLS]
// token, CLIP's image embedding); rows need not be normalised.
type ImageEmbedder interface {
	EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error)
}

// Cosine is the cosine similarity of a and b (float64 accumulation); 0
// when either is the zero vector.
func Cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}

// Fidelity returns, per generated embedding, the mean cosine to the
// reference embeddings: DreamBooth's DINO (and CLIP-I) subject fidelity,
// whose mean over images is the reported score.
func Fidelity(refs, gen [][]float32) ([]float64, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("metrics: no reference embeddings")
	}
	out := make([]float64, len(gen))
	for i, g := range gen {
		s := 0.0
		for _, r := range refs {
			if len(r) != len(g) {
				return nil, fmt.Errorf("metrics: embedding sizes %d and %d differ", len(g), len(r))
			}
			s += Cosine(g, r)
		}
		out[i] = s / float64(len(refs))
	}
	return out, nil
}

// Summary is a sample's mean and the standard error of that mean
// (sample standard deviation, n-1, over sqrt(n); 0 for one value).
type Summary struct {
	Mean, StdErr float64
	N            int
}

// Summarize computes the Summary of xs (NaN mean for no values).
func Summarize(xs []float64) Summary {
	n := len(xs)
	if n == 0 {
		return Summary{Mean: math.NaN()}
	}
	mean := 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= float64(n)
	if n == 1 {
		return Summary{Mean: mean, N: 1}
	}
	ss := 0.0
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return Summary{Mean: mean, StdErr: math.Sqrt(ss/float64(n-1)) / math.Sqrt(float64(n)), N: n}
}

// String is "0.3012 ± 0.0041".
func (s Summary) String() string { return fmt.Sprintf("%.4f ± %.4f", s.Mean, s.StdErr) }

// Group is the Summary of the values of one key (a prompt).
type Group struct {
	Key string
	Summary
}

// ByKey summarises values per key, in order of first appearance.
func ByKey(keys []string, values []float64) []Group {
	idx := map[string]int{}
	var order []string
	var vals [][]float64
	for i, k := range keys {
		j, ok := idx[k]
		if !ok {
			j = len(order)
			idx[k] = j
			order = append(order, k)
			vals = append(vals, nil)
		}
		vals[j] = append(vals[j], values[i])
	}
	out := make([]Group, len(order))
	for j, k := range order {
		out[j] = Group{Key: k, Summary: Summarize(vals[j])}
	}
	return out
}

// PreferenceProbs is the softmax of scores: PickScore's probability that
// each image is preferred among images of the same prompt.
func PreferenceProbs(scores []float64) []float64 {
	mx := math.Inf(-1)
	for _, s := range scores {
		mx = math.Max(mx, s)
	}
	out := make([]float64, len(scores))
	sum := 0.0
	for i, s := range scores {
		out[i] = math.Exp(s - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
