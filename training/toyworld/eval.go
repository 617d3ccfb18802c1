package toyworld

import (
	"context"
	"fmt"
	"image"
	"math"

	"github.com/instructbooth/instructbooth/model/generate"
)

// Evaluation summarises how well a model's images follow their prompts.
type Evaluation struct {
	N     int
	Score float64 // mean alignment score
	// Parts is the mean probability of each named attribute.
	Parts  map[string]float64
	Images []image.Image
	Prompt []string
}

func (v Evaluation) String() string {
	s := fmt.Sprintf("alignment %.3f over %d images", v.Score, v.N)
	for _, k := range []string{"class", "color", "background", "accessory", "action"} {
		if p, ok := v.Parts[k]; ok {
			s += fmt.Sprintf("  %s %.2f", k, p)
		}
	}
	return s
}

// EvalOptions set up Evaluate.
type EvalOptions struct {
	N        int     // images (one per prompt)
	Steps    int     // DDIM steps
	Guidance float32 // classifier-free guidance scale
	Seed     uint64  // prompts are the captions of scenes 0..N-1 of the base world under Seed
	Progress generate.Progress
}

// Evaluate generates one image for the canonical caption of each of N
// base-world scenes (DDIM, the given steps and guidance) and scores them
// with the alignment score.
func Evaluate(ctx context.Context, m *Model, o EvalOptions) (*Evaluation, error) {
	var prompts []string
	for i := 0; i < o.N; i++ {
		prompts = append(prompts, SampleScene(o.Seed, i).Caption())
	}
	return EvaluatePrompts(ctx, m, prompts, o)
}

// EvaluatePrompts is Evaluate over given prompts.
func EvaluatePrompts(ctx context.Context, m *Model, prompts []string, o EvalOptions) (*Evaluation, error) {
	v := &Evaluation{Parts: map[string]float64{}}
	counts := map[string]int{}
	size := m.Cfg.ImageSize
	for i, pr := range prompts {
		res, err := generate.Generate(ctx, m.Components("toyworld"), generate.Params{
			Prompt: pr, Steps: o.Steps, Guidance: o.Guidance, Seed: o.Seed*1000 + uint64(i),
			Width: size, Height: size, Sampler: "ddim",
		}, nil)
		if err != nil {
			return nil, err
		}
		img := res.Images[0].RGB
		p, err := PixelsFromImage(img)
		if err != nil {
			return nil, err
		}
		a := Align(p, pr)
		v.Score += a.Score
		for k, x := range a.Parts {
			v.Parts[k] += x
			counts[k]++
		}
		v.Images = append(v.Images, img)
		v.Prompt = append(v.Prompt, pr)
		v.N++
		if o.Progress != nil {
			o.Progress(i+1, len(prompts), 0)
		}
	}
	if v.N > 0 {
		v.Score /= float64(v.N)
	}
	for k := range v.Parts {
		v.Parts[k] /= float64(counts[k])
	}
	return v, nil
}

// Reconstruction measures the VAE on world images it never trained on.
type Reconstruction struct {
	N    int
	PSNR float64 // mean over images, pixel values in [0, 1]
	// Alignment is the mean alignment of the reconstructions with their
	// scenes' captions; Original that of the original renders.
	Alignment, Original float64
	// SubjectFidelity is the mean fidelity of reconstructed subject
	// photos against the originals (1 would be identical features).
	SubjectFidelity float64
	LatentStd       float64 // of the scaled latents (ideally about 1)
}

func (r Reconstruction) String() string {
	return fmt.Sprintf("VAE over %d images: PSNR %.1f dB, alignment %.3f (originals %.3f), subject fidelity %.3f, scaled latent std %.2f",
		r.N, r.PSNR, r.Alignment, r.Original, r.SubjectFidelity, r.LatentStd)
}

// MeasureReconstruction encodes (posterior mean) and decodes n base-world
// scenes of a held-out seed and 5 subject photos.
func MeasureReconstruction(m *Model, n int) (*Reconstruction, error) {
	e := m.UNet.W.E
	size := m.Cfg.ImageSize
	b := MakeBatch(0x686f6c64, 0, n, size, 0)
	sub := TheSubject()
	photos := sub.Photos(0x686f6c64, 5)
	imgs := append([]float32(nil), b.Images...)
	for _, s := range photos {
		v, _ := RenderFloat(s, size)
		for _, x := range v {
			imgs = append(imgs, 2*x-1)
		}
	}
	total := n + len(photos)
	var dec, lat []float32
	var err error
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		mean, _ := m.VAE.Encode(e.FromSlice(imgs, total, 3, size, size))
		z := m.VAE.Latents(mean, nil, nil)
		if lat, err = z.Read(); err != nil {
			return
		}
		dec, err = generate.DecodeLatents(m.VAE, z).Read()
	})
	if err != nil {
		return nil, err
	}
	r := &Reconstruction{N: n}
	plane := 3 * size * size
	toPixels := func(v []float32) (*Pixels, []float32) {
		u := make([]float32, len(v))
		for i, x := range v {
			u[i] = float32(clamp01((float64(x) + 1) / 2))
		}
		p, _ := PixelsFromFloat(u, size)
		return p, u
	}
	var origs, recs []*Pixels
	for i := 0; i < total; i++ {
		po, uo := toPixels(imgs[i*plane : (i+1)*plane])
		pr, ur := toPixels(dec[i*plane : (i+1)*plane])
		if i < n {
			mse := 0.0
			for k := range uo {
				d := float64(uo[k] - ur[k])
				mse += d * d
			}
			mse /= float64(len(uo))
			r.PSNR += 10 * math.Log10(1/math.Max(mse, 1e-10)) / float64(n)
			cap := b.Scenes[i].Caption()
			r.Alignment += Align(pr, cap).Score / float64(n)
			r.Original += Align(po, cap).Score / float64(n)
		} else {
			origs = append(origs, po)
			recs = append(recs, pr)
		}
	}
	ref, err := NewSubjectRef(origs)
	if err != nil {
		return nil, err
	}
	for _, p := range recs {
		r.SubjectFidelity += ref.Fidelity(p) / float64(len(recs))
	}
	var sq float64
	for _, v := range lat {
		sq += float64(v) * float64(v)
	}
	r.LatentStd = math.Sqrt(sq / float64(len(lat)))
	return r, nil
}
