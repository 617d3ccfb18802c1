package metrics

import (
	"context"
	"fmt"
	"image"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/dino"
	"github.com/instructbooth/instructbooth/model/imagereward"
	"github.com/instructbooth/instructbooth/model/imgproc"
)

// ImageRewardScorer is the ImageReward text-fidelity metric (and DDPO
// reward): the normalised reward of each (prompt, image) pair, with
// ImageReward's own preprocessing (bicubic resize of the short side to the
// model's image size, center crop, CLIP mean/std).
type ImageRewardScorer struct {
	Model *imagereward.Model
	Batch int // pairs per forward; 0 means DefaultBatch
}

// NewImageReward wraps a loaded ImageReward model.
func NewImageReward(m *imagereward.Model) *ImageRewardScorer { return &ImageRewardScorer{Model: m} }

// Name is "imagereward".
func (s *ImageRewardScorer) Name() string { return "imagereward" }

// Score returns one reward per (prompts[i], imgs[i]).
func (s *ImageRewardScorer) Score(ctx context.Context, prompts []string, imgs []image.Image) ([]float64, error) {
	if len(prompts) != len(imgs) {
		return nil, fmt.Errorf("imagereward: %d prompts for %d images", len(prompts), len(imgs))
	}
	b := s.Batch
	if b <= 0 {
		b = DefaultBatch
	}
	pre := imgproc.ImageReward(s.Model.ImageSize())
	e := s.Model.W.E
	out := make([]float64, 0, len(imgs))
	for i := 0; i < len(imgs); i += b {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		j := min(i+b, len(imgs))
		pix, h, w, err := pre.Batch(imgs[i:j])
		if err != nil {
			return nil, fmt.Errorf("imagereward: %w", err)
		}
		var vals []float32
		e.NoGrad(func() {
			sc := e.Scope()
			defer sc.Close()
			var r *gpu.Tensor
			if r, err = s.Model.Score(prompts[i:j], e.FromSlice(pix, j-i, 3, h, w)); err == nil {
				vals, err = r.Read()
			}
		})
		if err != nil {
			return nil, fmt.Errorf("imagereward: %w", err)
		}
		for _, v := range vals {
			out = append(out, float64(v))
		}
	}
	return out, nil
}

// NewDINO returns the DINO subject-fidelity metric of m: the mean cosine
// of each generated image's [CLS] embedding to the reference images', with
// DINO's preprocessing (resize 256/224 of the crop, center crop to the
// model's trained size, ImageNet mean/std).
func NewDINO(m *dino.Model) *EmbeddingFidelity {
	size := m.ViT.Cfg.Grid * m.ViT.Cfg.Patch
	e := m.ViT.W.E
	pe := PixelEmbedder{Pre: imgproc.DINO(size), Embed: func(pix []float32, n, h, w int) ([][]float32, error) {
		var vals []float32
		var err error
		e.NoGrad(func() {
			sc := e.Scope()
			defer sc.Close()
			var cls *gpu.Tensor
			if cls, err = m.Embed(e.FromSlice(pix, n, 3, h, w)); err == nil {
				vals, err = cls.Read()
			}
		})
		if err != nil {
			return nil, err
		}
		d := len(vals) / n
		rows := make([][]float32, n)
		for k := range rows {
			rows[k] = vals[k*d : (k+1)*d]
		}
		return rows, nil
	}}
	return &EmbeddingFidelity{Label: "dino", Embedder: pe}
}
