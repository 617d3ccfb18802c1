package metrics

import (
	"context"
	"fmt"
	"image"

	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/imgproc"
)

// DefaultBatch is the number of images per forward pass.
const DefaultBatch = 8

// CLIPScorer scores prompt-image pairs with a CLIPModel: CLIP-T is the
// raw cosine of the normalised text and image embeddings (no x100 or
// CLIPScore 2.5·max(cos, 0) rescaling); PickScore is exp(logit_scale) x
// that cosine with the PickScore_v1 checkpoint (a CLIP-H/14 in the same
// layout, its processor = CLIPImageProcessor at 224 and CLIPTokenizer
// truncating to 77; its padding with id 0 plus mask pools the same end
// token as our end-token padding).
type CLIPScorer struct {
	Model *clip.Model
	// Tok tokenizes prompts; nil means the model folder's own tokenizer.
	Tok *clip.Tokenizer
	// Scaled multiplies cosines by exp(logit_scale) (PickScore).
	Scaled bool
	// Batch is the number of images (and prompts) per forward; 0 means
	// DefaultBatch.
	Batch int
	name  string
}

// NewCLIPT returns the CLIP-T scorer of m (named "clip-t").
func NewCLIPT(m *clip.Model, tok *clip.Tokenizer) *CLIPScorer {
	return &CLIPScorer{Model: m, Tok: tok, name: "clip-t"}
}

// NewPickScore returns the PickScore scorer of m (named "pickscore").
func NewPickScore(m *clip.Model, tok *clip.Tokenizer) *CLIPScorer {
	return &CLIPScorer{Model: m, Tok: tok, Scaled: true, name: "pickscore"}
}

// Name is "clip-t" or "pickscore".
func (s *CLIPScorer) Name() string { return s.name }

func (s *CLIPScorer) batch() int {
	if s.Batch > 0 {
		return s.Batch
	}
	return DefaultBatch
}

// Score returns one score per (prompts[i], imgs[i]). Each distinct prompt
// is encoded once.
func (s *CLIPScorer) Score(ctx context.Context, prompts []string, imgs []image.Image) ([]float64, error) {
	if len(prompts) != len(imgs) {
		return nil, fmt.Errorf("%s: %d prompts for %d images", s.name, len(prompts), len(imgs))
	}
	idx := map[string]int{}
	var uniq []string
	for _, p := range prompts {
		if _, ok := idx[p]; !ok {
			idx[p] = len(uniq)
			uniq = append(uniq, p)
		}
	}
	var tv [][]float32
	for i := 0; i < len(uniq); i += s.batch() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v, err := s.Model.EmbedTexts(s.Tok, uniq[i:min(i+s.batch(), len(uniq))])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		tv = append(tv, v...)
	}
	iv, err := (&CLIPImageEmbedder{Model: s.Model, Batch: s.Batch}).EmbedImages(ctx, imgs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	scale := 1.0
	if s.Scaled {
		scale = float64(s.Model.LogitScaleExp())
	}
	out := make([]float64, len(imgs))
	for i := range imgs {
		out[i] = scale * clip.Dot(tv[idx[prompts[i]]], iv[i])
	}
	return out, nil
}

// CLIPImageEmbedder embeds images with a CLIPModel's image tower
// (normalised get_image_features), preprocessing with the model's
// Preprocess config.
type CLIPImageEmbedder struct {
	Model *clip.Model
	Batch int // 0 means DefaultBatch
}

// EmbedImages implements ImageEmbedder.
func (c *CLIPImageEmbedder) EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	pe := PixelEmbedder{Pre: c.Model.Preprocess, Batch: c.Batch,
		Embed: func(pix []float32, n, h, w int) ([][]float32, error) { return c.Model.EmbedPixels(pix, n) }}
	return pe.EmbedImages(ctx, imgs)
}

// PixelEmbedder adapts a model that embeds normalised pixels (data of
// [n, 3, h, w]), such as DINO's ViT, to ImageEmbedder: images are
// preprocessed with Pre and embedded Batch at a time.
type PixelEmbedder struct {
	Pre   imgproc.Config
	Batch int // 0 means DefaultBatch
	Embed func(pixels []float32, n, h, w int) ([][]float32, error)
}

// EmbedImages implements ImageEmbedder.
func (p PixelEmbedder) EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	b := p.Batch
	if b <= 0 {
		b = DefaultBatch
	}
	var out [][]float32
	for i := 0; i < len(imgs); i += b {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		chunk := imgs[i:min(i+b, len(imgs))]
		pix, h, w, err := p.Pre.Batch(chunk)
		if err != nil {
			return nil, err
		}
		v, err := p.Embed(pix, len(chunk), h, w)
		if err != nil {
			return nil, err
		}
		if len(v) != len(chunk) {
			return nil, fmt.Errorf("metrics: embedder returned %d rows for %d images", len(v), len(chunk))
		}
		out = append(out, v...)
	}
	return out, nil
}

// EmbeddingFidelity is a SubjectScorer over any ImageEmbedder: each
// generated image's mean cosine to the reference images' embeddings
// (DINO with DINO's ViT, CLIP-I with a CLIP image tower).
type EmbeddingFidelity struct {
	Label    string // e.g. "dino"
	Embedder ImageEmbedder
}

// Name is the Label.
func (f *EmbeddingFidelity) Name() string { return f.Label }

// ScoreSubject implements SubjectScorer.
func (f *EmbeddingFidelity) ScoreSubject(ctx context.Context, refs, imgs []image.Image) ([]float64, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s: no reference images", f.Label)
	}
	re, err := f.Embedder.EmbedImages(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("%s: reference images: %w", f.Label, err)
	}
	ge, err := f.Embedder.EmbedImages(ctx, imgs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Label, err)
	}
	return Fidelity(re, ge)
}
