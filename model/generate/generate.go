package generate

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

// Components are the parts of a Stable Diffusion 1.x checkpoint that
// generation uses. All models must live on the same engine.
type Components struct {
	Tokenizer *clip.Tokenizer
	Text      *clip.TextModel
	UNet      *sd.UNet
	VAE       *sd.VAE
	Schedule  *sched.Schedule
	// Name identifies the model in the images' metadata (e.g. the
	// checkpoint's file or folder name).
	Name string
}

// FromPipeline returns the components of a loaded pipeline, named name.
func FromPipeline(p *sd.Pipeline, name string) Components {
	return Components{Tokenizer: p.Tokenizer, Text: p.Text, UNet: p.UNet, VAE: p.VAE, Schedule: p.Schedule, Name: name}
}

// Defaults of Params' zero fields.
const (
	DefaultSteps    = 25
	DefaultGuidance = 7.5
	DefaultSize     = 512
	DefaultSampler  = "dpm++2m"
)

// Params are the settings of a text-to-image run.
type Params struct {
	Prompt   string
	Negative string  // the unconditional text of classifier-free guidance ("" by default)
	Steps    int     // sampling steps (DefaultSteps when 0)
	Guidance float32 // classifier-free guidance scale (DefaultGuidance when 0; in (0, 1] guidance is off)
	// Seed of the first image; image i of a run uses Seed + i, so every
	// image can be regenerated on its own with Count 1.
	Seed          uint64
	Width, Height int    // image size in pixels, multiples of 64 (DefaultSize when 0)
	Count         int    // number of images, generated one after the other (1 when 0)
	Sampler       string // "ddim", "euler" or "dpm++2m" (DefaultSampler when "")
	Eta           float32
	// Record keeps each image's sampling trajectory.
	Record bool
}

// WithDefaults returns p with zero fields set to their defaults.
func (p Params) WithDefaults() Params {
	if p.Steps == 0 {
		p.Steps = DefaultSteps
	}
	if p.Guidance == 0 {
		p.Guidance = DefaultGuidance
	}
	if p.Width == 0 {
		p.Width = DefaultSize
	}
	if p.Height == 0 {
		p.Height = DefaultSize
	}
	if p.Count == 0 {
		p.Count = 1
	}
	if p.Sampler == "" {
		p.Sampler = DefaultSampler
	}
	return p
}

// Validate reports the first problem with p (after WithDefaults).
func (p Params) Validate() error {
	switch {
	case p.Width <= 0 || p.Height <= 0 || p.Width%8 != 0 || p.Height%8 != 0:
		return fmt.Errorf("generate: size %dx%d: width and height must be positive multiples of 8", p.Width, p.Height)
	case p.Width > 4096 || p.Height > 4096:
		return fmt.Errorf("generate: size %dx%d: at most 4096 pixels a side", p.Width, p.Height)
	case p.Steps < 1 || p.Steps > 1000:
		return fmt.Errorf("generate: %d steps: must be between 1 and 1000", p.Steps)
	case p.Count < 1 || p.Count > 10000:
		return fmt.Errorf("generate: count %d: must be between 1 and 10000", p.Count)
	case math.IsNaN(float64(p.Guidance)) || math.IsInf(float64(p.Guidance), 0) || p.Guidance < 0 || p.Guidance > 100:
		return fmt.Errorf("generate: guidance %g: must be between 0 and 100", p.Guidance)
	case p.Eta < 0 || p.Eta > 1 || math.IsNaN(float64(p.Eta)):
		return fmt.Errorf("generate: eta %g: must be between 0 and 1", p.Eta)
	case p.Eta != 0 && p.Sampler != "ddim":
		return fmt.Errorf("generate: eta applies to the ddim sampler only")
	}
	switch p.Sampler {
	case "ddim", "euler", "dpm++2m":
	default:
		return fmt.Errorf("generate: unknown sampler %q (ddim, euler, dpm++2m)", p.Sampler)
	}
	return nil
}

// Progress receives the number of sampling steps done over the whole run
// (all images), the total, and the time since the run began.
type Progress func(step, total int, elapsed time.Duration)

// Image is one generated image.
type Image struct {
	RGB *image.NRGBA
	// Params are the run's settings with this image's seed and Count 1:
	// generating them again reproduces the image.
	Params     Params
	Trajectory *Trajectory // with Params.Record
}

// Result is a run's output.
type Result struct {
	Images []Image
	// PromptTruncated and NegativeTruncated report texts longer than the
	// text encoder's 75 tokens (the rest was dropped).
	PromptTruncated, NegativeTruncated bool
}

// Generate draws p.Count images for p.Prompt. The initial latent of image
// i is Noise(Seed+i, 0) times the sampler's initial scale, and stochastic
// steps use Noise(Seed+i, 1+k), so a seed gives the same image on any GPU
// up to the GPU's float32 rounding. ctx is checked between steps; a
// cancelled run returns ctx.Err() and the images finished so far.
func Generate(ctx context.Context, c Components, p Params, progress Progress) (*Result, error) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if c.Tokenizer == nil || c.Text == nil || c.UNet == nil || c.VAE == nil || c.Schedule == nil {
		return nil, fmt.Errorf("generate: incomplete model (tokenizer, text encoder, U-Net, VAE and schedule are all needed)")
	}
	if m := c.SizeMultiple(); p.Width%m != 0 || p.Height%m != 0 {
		return nil, fmt.Errorf("generate: size %dx%d: this model needs multiples of %d", p.Width, p.Height, m)
	}
	e := c.UNet.W.E
	start := time.Now()
	res := &Result{}

	// Text conditioning: one encoder batch [negative; prompt].
	neg, negCut := c.Tokenizer.EncodeSD(p.Negative)
	pos, posCut := c.Tokenizer.EncodeSD(p.Prompt)
	res.PromptTruncated, res.NegativeTruncated = posCut, negCut
	var uncond, cond *gpu.Tensor
	var err error
	e.NoGrad(func() {
		s := e.Scope()
		var out *clip.TextOutput
		if out, err = c.Text.Forward([][]int32{neg[:], pos[:]}); err != nil {
			s.Close()
			return
		}
		parts := e.Split(out.Last, 0, 1, 1) // [1, 77, D] each
		uncond, cond = parts[0], parts[1]
		s.Close(uncond, cond)
	})
	if err != nil {
		return nil, err
	}
	defer uncond.Release()
	defer cond.Release()
	guide, err := NewGuide(c.UNet, cond, uncond, p.Guidance)
	if err != nil {
		return nil, err
	}
	guide.Schedule = c.Schedule
	defer guide.Release()

	lc, f := c.UNet.Cfg.InChannels, c.VAE.Factor()
	shape := []int{1, lc, p.Height / f, p.Width / f} // latent [1, C, h, w]
	n := lc * p.Height / f * p.Width / f
	total := p.Count * p.Steps
	for i := 0; i < p.Count; i++ {
		ip := p
		ip.Seed, ip.Count = p.Seed+uint64(i), 1
		img, err := generateOne(ctx, c, ip, guide, shape, n, func(done, _ int) {
			if progress != nil {
				progress(i*p.Steps+done, total, time.Since(start))
			}
		})
		if err != nil {
			return res, err
		}
		res.Images = append(res.Images, *img)
	}
	return res, nil
}

func generateOne(ctx context.Context, c Components, p Params, guide *Guide, shape []int, n int, progress func(done, total int)) (*Image, error) {
	e := c.UNet.W.E
	smp, err := c.Schedule.NewSampler(p.Sampler, p.Steps, p.Eta)
	if err != nil {
		return nil, err
	}
	init := make([]float32, n)
	Noise(p.Seed, 0, init)
	if sc := smp.InitScale(); sc != 1 {
		for j := range init {
			init[j] *= sc
		}
	}
	xT, err := e.Upload(gpu.Activations, init, shape...)
	if err != nil {
		return nil, err
	}
	defer xT.Release()
	z := make([]float32, n)
	x0, tr, err := Sample(ctx, xT, SampleConfig{
		Sampler: smp, Guide: guide, Record: p.Record, Progress: progress,
		Noise: func(k int) []float32 { Noise(p.Seed, 1+uint64(k), z); return z },
	})
	if err != nil {
		return nil, err
	}
	defer x0.Release()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rgb, err := DecodeImages(c.VAE, x0)
	if err != nil {
		return nil, err
	}
	return &Image{RGB: rgb[0], Params: p, Trajectory: tr}, nil
}

// SizeMultiple is what image sides must be multiples of for c: the VAE's
// factor times the U-Net's downsampling (64 for SD 1.x).
func (c Components) SizeMultiple() int {
	return c.VAE.Factor() << (len(c.UNet.Cfg.BlockOutChannels) - 1)
}

// DecodeLatents runs the VAE decoder on SD latents x0 [N, C, h, w] (divided
// by the scaling factor first) and returns the raw images [N, 3, f h, f w]
// (f the VAE's factor; not clamped).
func DecodeLatents(v *sd.VAE, x0 *gpu.Tensor) *gpu.Tensor {
	e := v.W.E
	var out *gpu.Tensor
	e.NoGrad(func() {
		s := e.Scope()
		out = v.Decode(v.Unscale(x0))
		s.Close(out)
	})
	return out
}

// DecodeImages decodes SD latents [N, 4, h, w] into 8-bit images.
func DecodeImages(v *sd.VAE, x0 *gpu.Tensor) ([]*image.NRGBA, error) {
	dec := DecodeLatents(v, x0)
	defer dec.Release()
	vals, err := dec.Read()
	if err != nil {
		return nil, err
	}
	sh := dec.Shape()
	return ToRGB(vals, sh[0], sh[1], sh[2], sh[3])
}

// ToRGB converts decoded images (NCHW float values, 3 channels, nominally
// in [-1, 1]) to 8-bit images as diffusers does: clamp to [-1, 1], map to
// [0, 255] and round: round(255 (clamp(x, -1, 1) + 1) / 2).
func ToRGB(vals []float32, n, ch, h, w int) ([]*image.NRGBA, error) {
	if ch != 3 || len(vals) != n*ch*h*w {
		return nil, fmt.Errorf("generate: cannot make RGB images from %d values of [%d, %d, %d, %d]", len(vals), n, ch, h, w)
	}
	out := make([]*image.NRGBA, n)
	plane := h * w
	for i := range out {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		base := i * 3 * plane
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				j := base + y*w + x
				img.SetNRGBA(x, y, color.NRGBA{R: to8(vals[j]), G: to8(vals[j+plane]), B: to8(vals[j+2*plane]), A: 255})
			}
		}
		out[i] = img
	}
	return out, nil
}

func to8(v float32) uint8 {
	f := float64(v)
	if !(f > -1) { // also NaN
		f = -1
	}
	if f > 1 {
		f = 1
	}
	return uint8(math.RoundToEven((f + 1) / 2 * 255))
}

// SamplerLabel is a sampler's display name ("DPM++ 2M" for "dpm++2m").
func SamplerLabel(name string) string {
	switch name {
	case "dpm++2m":
		return "DPM++ 2M"
	case "ddim":
		return "DDIM"
	case "euler":
		return "Euler"
	}
	return strings.ToUpper(name)
}
