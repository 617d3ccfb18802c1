package sd

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// ScalingFactor is SD 1.x's latent scale: latents = 0.18215 * posterior.
const ScalingFactor = 0.18215

// VAEConfig is AutoencoderKL's shape, inferred from the weights.
type VAEConfig struct {
	InChannels, LatentChannels int
	BlockOutChannels           []int
	LayersPerBlock             int
	Groups                     int
	Eps                        float32
}

// VAE is diffusers' AutoencoderKL (SD 1.x): Encoder (DownEncoderBlock2D x4,
// mid block with one single-head attention), quant convs, Decoder
// (UpDecoderBlock2D x4).
//
// A VAE may instead be a fixed pixel codec (NewPixelCodec): no weights,
// Encode is a space-to-depth rearrangement (torch's pixel_unshuffle) and
// Decode its exact inverse. The toy world's base model uses one.
type VAE struct {
	W   *nn.Weights // empty for a pixel codec (its E is the engine)
	Cfg VAEConfig
	// Patch is the side of a pixel codec's patches; 0 for AutoencoderKL.
	Patch int
	// Scale is the latent scale (vae/config.json scaling_factor;
	// ScalingFactor unless the config says otherwise): U-Net latents are
	// Scale times the posterior.
	Scale float32
}

// PixelCodecClass is the _class_name of a pixel codec's vae/config.json.
const PixelCodecClass = "PixelUnshuffleCodec"

// NewPixelCodec returns the fixed codec that maps images [N, in, H, W] to
// latents [N, in*patch*patch, H/patch, W/patch] by space-to-depth
// (channel c*patch*patch + dy*patch + dx holds pixel (patch*y+dy,
// patch*x+dx) of channel c, as torch.nn.functional.pixel_unshuffle) and
// back. It is exactly invertible; scale is its latent scale.
func NewPixelCodec(e *gpu.Engine, in, patch int, scale float32) (*VAE, error) {
	if patch < 1 || patch > 16 || in < 1 || in > 4 {
		return nil, fmt.Errorf("vae: pixel codec with %d channels and patch %d: want 1-4 channels and a patch of 1-16", in, patch)
	}
	if !(scale > 0) || math.IsInf(float64(scale), 0) {
		return nil, fmt.Errorf("vae: pixel codec scaling_factor %g: must be positive and finite", scale)
	}
	return &VAE{W: nn.NewWeights(e), Patch: patch, Scale: scale,
		Cfg: VAEConfig{InChannels: in, LatentChannels: in * patch * patch}}, nil
}

// Factor is the ratio of image to latent side: 2^(levels-1) for
// AutoencoderKL (8 for SD 1.x), the patch for a pixel codec.
func (v *VAE) Factor() int {
	if v.Patch > 0 {
		return v.Patch
	}
	return 1 << (len(v.Cfg.BlockOutChannels) - 1)
}

// scale is v.Scale, or ScalingFactor for a VAE built without one.
func (v *VAE) scale() float32 {
	if v.Scale == 0 {
		return ScalingFactor
	}
	return v.Scale
}

// unshuffle is space-to-depth: [N, C, H, W] -> [N, C*p*p, H/p, W/p].
func unshuffle(e *gpu.Engine, x *gpu.Tensor, p int) *gpu.Tensor {
	sh := x.Shape() // [N, C, H, W]
	n, c, h, w := sh[0], sh[1], sh[2]/p, sh[3]/p
	t := e.Permute(x.Reshape(n, c, h, p, w, p), 0, 1, 3, 5, 2, 4) // [N, C, p, p, h, w]
	return t.Reshape(n, c*p*p, h, w)
}

// shuffle is depth-to-space, unshuffle's inverse.
func shuffle(e *gpu.Engine, z *gpu.Tensor, p int) *gpu.Tensor {
	sh := z.Shape() // [N, C*p*p, h, w]
	n, c, h, w := sh[0], sh[1]/(p*p), sh[2], sh[3]
	t := e.Permute(z.Reshape(n, c, p, p, h, w), 0, 1, 4, 2, 5, 3) // [N, C, h, p, w, p]
	return t.Reshape(n, c, h*p, w*p)
}

// NewVAE builds the model over w (diffusers keys), inferring its shape.
func NewVAE(w *nn.Weights) (*VAE, error) {
	c := VAEConfig{Groups: 32, Eps: 1e-6}
	ci := w.Shape("encoder.conv_in.weight")
	qc := w.Shape("quant_conv.weight")
	if len(ci) != 4 || len(qc) != 4 {
		return nil, fmt.Errorf("vae: missing encoder.conv_in or quant_conv: not an AutoencoderKL")
	}
	c.InChannels = ci[1]
	c.LatentChannels = qc[0] / 2
	for i := 0; ; i++ {
		s := w.Shape(fmt.Sprintf("encoder.down_blocks.%d.resnets.0.conv1.weight", i))
		if len(s) != 4 {
			break
		}
		c.BlockOutChannels = append(c.BlockOutChannels, s[0])
	}
	if len(c.BlockOutChannels) == 0 {
		return nil, fmt.Errorf("vae: no encoder.down_blocks")
	}
	for w.Has(fmt.Sprintf("encoder.down_blocks.0.resnets.%d.conv1.weight", c.LayersPerBlock)) {
		c.LayersPerBlock++
	}
	if !w.Has("encoder.mid_block.attentions.0.to_q.weight") {
		return nil, fmt.Errorf("vae: encoder.mid_block.attentions.0.to_q.weight missing (old attention keys must be converted at load)")
	}
	return &VAE{W: w, Cfg: c}, nil
}

func (v *VAE) resnet(w *nn.Weights, x *gpu.Tensor) *gpu.Tensor {
	e, c := w.E, v.Cfg
	s := e.Scope()
	// In inference each activation is released as soon as the next layer
	// has consumed it (Consume); at 512x512 one decoder activation is 128 MiB.
	n := nn.GroupNorm(w.Sub("norm1"), x, c.Groups, c.Eps)
	a := e.SiLU(n)
	e.Consume(n)
	h := nn.Conv2d(w.Sub("conv1"), a, 1, 1)
	e.Consume(a)
	n = nn.GroupNorm(w.Sub("norm2"), h, c.Groups, c.Eps)
	e.Consume(h)
	a = e.SiLU(n)
	e.Consume(n)
	h = nn.Conv2d(w.Sub("conv2"), a, 1, 1)
	e.Consume(a)
	skip := x
	if w.Has("conv_shortcut.weight") {
		skip = nn.Conv2d(w.Sub("conv_shortcut"), x, 1, 0)
	}
	out := e.Add(skip, h)
	e.Consume(h)
	if skip != x {
		e.Consume(skip)
	}
	s.Close(out)
	return out
}

// attention is the mid block's single-head self-attention over pixels with
// a GroupNorm in front and a residual connection.
func (v *VAE) attention(w *nn.Weights, x *gpu.Tensor) *gpu.Tensor {
	e, c := w.E, v.Cfg
	s := e.Scope()
	n, ch, hh, ww := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
	h := nn.GroupNorm(w.Sub("group_norm"), x, c.Groups, c.Eps)
	h = e.Permute(h, 0, 2, 3, 1).Reshape(n, hh*ww, ch) // [N, HW, C]
	h = Attention(w, h, h, 1, false)
	h = e.Permute(h.Reshape(n, hh, ww, ch), 0, 3, 1, 2) // [N, C, H, W]
	out := e.Add(h, x)
	s.Close(out)
	return out
}

// mid runs the mid block on h, consuming h.
func (v *VAE) mid(w *nn.Weights, h *gpu.Tensor) *gpu.Tensor {
	e := w.E
	a := v.resnet(w.Sub("resnets.0"), h)
	e.Consume(h)
	b := v.attention(w.Sub("attentions.0"), a)
	e.Consume(a)
	out := v.resnet(w.Sub("resnets.1"), b)
	e.Consume(b)
	return out
}

// Encode maps images x [N, 3, H, W] in [-1, 1] (H, W multiples of
// Factor, f) to the posterior's mean and log-variance [N, L, H/f, W/f]
// (unscaled; log-variance clamped to [-30, 20] as diffusers does).
//
// A pixel codec returns the rearranged pixels and a log-variance of -30
// (the clamp's floor: a deterministic posterior).
func (v *VAE) Encode(x *gpu.Tensor) (mean, logvar *gpu.Tensor) {
	e, c := v.W.E, v.Cfg
	if v.Patch > 0 {
		sh := x.Shape()
		if len(sh) != 4 || sh[1] != c.InChannels || sh[2]%v.Patch != 0 || sh[3]%v.Patch != 0 {
			panic(fmt.Sprintf("sd: pixel codec (patch %d, %d channels) cannot encode %v", v.Patch, c.InChannels, sh))
		}
		mean = unshuffle(e, x, v.Patch)
		lv := make([]float32, mean.Len())
		for i := range lv {
			lv[i] = -30
		}
		return mean, e.FromSlice(lv, mean.Shape()...)
	}
	w := v.W.Sub("encoder")
	s := e.Scope()
	h := nn.Conv2d(w.Sub("conv_in"), x, 1, 1)
	next := func(t *gpu.Tensor) { e.Consume(h); h = t } // h is never the caller's x
	for i := range c.BlockOutChannels {
		bw := w.Sub(fmt.Sprintf("down_blocks.%d", i))
		for j := 0; j < c.LayersPerBlock; j++ {
			next(v.resnet(bw.Sub(fmt.Sprintf("resnets.%d", j)), h))
		}
		if i < len(c.BlockOutChannels)-1 {
			// Downsample2D in the VAE pads right and bottom by one, then
			// convolves with stride 2 and no padding.
			p := e.Pad2d(h, 0, 1, 0, 1)
			next(nn.Conv2d(bw.Sub("downsamplers.0.conv"), p, 2, 0))
			e.Consume(p)
		}
	}
	h = v.mid(w.Sub("mid_block"), h)
	n := nn.GroupNorm(w.Sub("conv_norm_out"), h, c.Groups, c.Eps)
	next(e.SiLU(n))
	e.Consume(n)
	next(nn.Conv2d(w.Sub("conv_out"), h, 1, 1))
	moments := nn.Conv2d(v.W.Sub("quant_conv"), h, 1, 0) // [N, 2L, h, w]
	parts := e.Split(moments, 1, c.LatentChannels, c.LatentChannels)
	mean, logvar = parts[0], e.Clamp(parts[1], -30, 20)
	s.Close(mean, logvar)
	return mean, logvar
}

// Decode maps latents z [N, L, h, w] (already divided by the scale; see
// Unscale) to images [N, 3, f h, f w] with f = Factor (raw, not clamped).
func (v *VAE) Decode(z *gpu.Tensor) *gpu.Tensor {
	e, c := v.W.E, v.Cfg
	if v.Patch > 0 {
		sh := z.Shape()
		if len(sh) != 4 || sh[1] != c.LatentChannels {
			panic(fmt.Sprintf("sd: pixel codec (%d latent channels) cannot decode %v", c.LatentChannels, sh))
		}
		return shuffle(e, z, v.Patch)
	}
	w := v.W.Sub("decoder")
	s := e.Scope()
	h := nn.Conv2d(v.W.Sub("post_quant_conv"), z, 1, 0)
	next := func(t *gpu.Tensor) { e.Consume(h); h = t } // h is never the caller's z
	next(nn.Conv2d(w.Sub("conv_in"), h, 1, 1))
	h = v.mid(w.Sub("mid_block"), h)
	for i := range c.BlockOutChannels {
		bw := w.Sub(fmt.Sprintf("up_blocks.%d", i))
		for j := 0; j <= c.LayersPerBlock; j++ {
			next(v.resnet(bw.Sub(fmt.Sprintf("resnets.%d", j)), h))
		}
		if i < len(c.BlockOutChannels)-1 {
			u := e.Upsample2x(h)
			next(nn.Conv2d(bw.Sub("upsamplers.0.conv"), u, 1, 1))
			e.Consume(u)
		}
	}
	n := nn.GroupNorm(w.Sub("conv_norm_out"), h, c.Groups, c.Eps)
	next(e.SiLU(n))
	e.Consume(n)
	out := nn.Conv2d(w.Sub("conv_out"), h, 1, 1)
	e.Consume(h)
	s.Close(out)
	return out
}

// Latents turns the posterior into the U-Net's latents, scaled by
// v.Scale: the mean when noise is nil, else a sample
// mean + exp(logvar / 2) * noise ([N, L, h, w] standard normal).
func (v *VAE) Latents(mean, logvar, noise *gpu.Tensor) *gpu.Tensor {
	e := v.W.E
	z := mean
	if noise != nil {
		z = e.Add(mean, e.Mul(e.Exp(e.Scale(logvar, 0.5)), noise))
	}
	return e.Scale(z, v.scale())
}

// Unscale divides U-Net latents by the latent scale, giving what Decode
// takes.
func (v *VAE) Unscale(x *gpu.Tensor) *gpu.Tensor { return v.W.E.Scale(x, 1/v.scale()) }
