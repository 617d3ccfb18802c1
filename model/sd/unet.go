package sd

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// UNet is diffusers' UNet2DConditionModel for SD 1.x: time embedding,
// CrossAttnDownBlock2D x3 + DownBlock2D, UNetMidBlock2DCrossAttn, UpBlock2D +
// CrossAttnUpBlock2D x3, with ResnetBlock2D and Transformer2DModel inside.
type UNet struct {
	W   *nn.Weights
	Cfg UNetConfig
	// Checkpointing recomputes each resnet and transformer block during
	// Backward instead of keeping its activations.
	Checkpointing bool
	// Taps, if set, receives intermediate activations by diffusers module
	// name ("conv_in", "down_blocks.0", "mid_block", "up_blocks.3", ...).
	Taps func(name string, t *gpu.Tensor)
}

// NewUNet builds the model over weights w (diffusers keys), completing cfg
// from the weights.
func NewUNet(w *nn.Weights, cfg UNetConfig) (*UNet, error) {
	c, err := InferUNetConfig(w, cfg)
	if err != nil {
		return nil, err
	}
	return &UNet{W: w, Cfg: c}, nil
}

func (u *UNet) tap(name string, t *gpu.Tensor) {
	if u.Taps != nil {
		u.Taps(name, t)
	}
}

// block runs f in a scope that keeps only its result, checkpointed when
// training with Checkpointing on.
func (u *UNet) block(f func(in []*gpu.Tensor) *gpu.Tensor, ins ...*gpu.Tensor) *gpu.Tensor {
	e := u.W.E
	if u.Checkpointing && e.GradEnabled() {
		return e.Checkpoint(f, ins...)
	}
	s := e.Scope()
	out := f(ins)
	s.Close(out)
	return out
}

// Forward predicts the noise for latents x [N, Cin, H, W] (H, W multiples
// of 8) at timesteps t [N] (float) with text conditioning ctx
// [N, L, cross_attention_dim]. Returns [N, Cout, H, W].
func (u *UNet) Forward(x, t, ctx *gpu.Tensor) *gpu.Tensor {
	e, w, c := u.W.E, u.W, u.Cfg
	if x.Dim(2)%8 != 0 || x.Dim(3)%8 != 0 {
		panic(fmt.Sprintf("unet: latent size %dx%d is not a multiple of 8", x.Dim(2), x.Dim(3)))
	}
	s := e.Scope()
	proj := e.TimestepEmbedding(t, c.BlockOutChannels[0], c.FlipSinToCos, c.FreqShift, 10000) // [N, C0]
	u.tap("time_proj", proj)
	temb := nn.Linear(w.Sub("time_embedding.linear_2"), e.SiLU(nn.Linear(w.Sub("time_embedding.linear_1"), proj))) // [N, T]
	u.tap("time_embedding", temb)
	tact := e.SiLU(temb) // every resnet projects silu(temb)

	h := nn.Conv2d(w.Sub("conv_in"), x, 1, 1) // [N, C0, H, W]
	u.tap("conv_in", h)
	skips := []*gpu.Tensor{h}
	levels := len(c.BlockOutChannels)
	for i := 0; i < levels; i++ {
		bw := w.Sub(fmt.Sprintf("down_blocks.%d", i))
		for j := 0; j < c.LayersPerBlock; j++ {
			h = u.resnet(bw.Sub(fmt.Sprintf("resnets.%d", j)), h, tact)
			if c.DownHasAttn[i] {
				h = u.transformer(bw.Sub(fmt.Sprintf("attentions.%d", j)), h, ctx, c.Heads[i])
			}
			skips = append(skips, h)
		}
		if i < levels-1 {
			h = nn.Conv2d(bw.Sub("downsamplers.0.conv"), h, 2, 1)
			skips = append(skips, h)
		}
		u.tap(fmt.Sprintf("down_blocks.%d", i), h)
	}

	mw := w.Sub("mid_block")
	h = u.resnet(mw.Sub("resnets.0"), h, tact)
	h = u.transformer(mw.Sub("attentions.0"), h, ctx, c.Heads[levels-1])
	h = u.resnet(mw.Sub("resnets.1"), h, tact)
	u.tap("mid_block", h)

	for i := 0; i < levels; i++ {
		level := levels - 1 - i // channel level this up block works at
		bw := w.Sub(fmt.Sprintf("up_blocks.%d", i))
		for j := 0; j <= c.LayersPerBlock; j++ {
			skip := skips[len(skips)-1]
			skips = skips[:len(skips)-1]
			h = e.Concat(1, h, skip) // [N, Ch + Cskip, H, W]
			h = u.resnet(bw.Sub(fmt.Sprintf("resnets.%d", j)), h, tact)
			if c.DownHasAttn[level] {
				h = u.transformer(bw.Sub(fmt.Sprintf("attentions.%d", j)), h, ctx, c.Heads[level])
			}
		}
		if i < levels-1 {
			h = nn.Conv2d(bw.Sub("upsamplers.0.conv"), e.Upsample2x(h), 1, 1)
		}
		u.tap(fmt.Sprintf("up_blocks.%d", i), h)
	}

	h = nn.GroupNorm(w.Sub("conv_norm_out"), h, c.NormNumGroups, c.NormEps)
	u.tap("conv_norm_out", h)
	out := nn.Conv2d(w.Sub("conv_out"), e.SiLU(h), 1, 1) // [N, Cout, H, W]
	s.Close(out)
	return out
}

// resnet is ResnetBlock2D: GroupNorm, SiLU, conv3x3, + time projection,
// GroupNorm, SiLU, conv3x3, plus a 1x1 shortcut when channels change.
func (u *UNet) resnet(w *nn.Weights, x, tact *gpu.Tensor) *gpu.Tensor {
	c := u.Cfg
	return u.block(func(in []*gpu.Tensor) *gpu.Tensor {
		x, tact := in[0], in[1]
		e := w.E
		h := nn.Conv2d(w.Sub("conv1"), e.SiLU(nn.GroupNorm(w.Sub("norm1"), x, c.NormNumGroups, c.NormEps)), 1, 1) // [N, Co, H, W]
		tp := nn.Linear(w.Sub("time_emb_proj"), tact)                                                             // [N, Co]
		h = e.Add(h, tp.Reshape(tp.Dim(0), tp.Dim(1), 1, 1))
		h = nn.Conv2d(w.Sub("conv2"), e.SiLU(nn.GroupNorm(w.Sub("norm2"), h, c.NormNumGroups, c.NormEps)), 1, 1)
		if w.Has("conv_shortcut.weight") {
			x = nn.Conv2d(w.Sub("conv_shortcut"), x, 1, 0)
		}
		return e.Add(x, h)
	}, x, tact)
}

// transformer is Transformer2DModel: GroupNorm (eps 1e-6), proj_in (1x1
// conv or linear), BasicTransformerBlocks (self-attention, cross-attention,
// GEGLU feed-forward, each pre-LayerNorm with a residual), proj_out, plus
// the input.
func (u *UNet) transformer(w *nn.Weights, x, ctx *gpu.Tensor, heads int) *gpu.Tensor {
	c := u.Cfg
	return u.block(func(in []*gpu.Tensor) *gpu.Tensor {
		x, ctx := in[0], in[1]
		e := w.E
		n, ch, hh, ww := x.Dim(0), x.Dim(1), x.Dim(2), x.Dim(3)
		h := nn.GroupNorm(w.Sub("norm"), x, c.NormNumGroups, 1e-6)
		if c.UseLinearProjection {
			h = e.Permute(h, 0, 2, 3, 1).Reshape(n, hh*ww, ch) // [N, HW, C]
			h = nn.Linear(w.Sub("proj_in"), h)
		} else {
			h = nn.Conv2d(w.Sub("proj_in"), h, 1, 0)
			h = e.Permute(h, 0, 2, 3, 1).Reshape(n, hh*ww, ch) // [N, HW, C]
		}
		for b := 0; b < c.TransformerDepth; b++ {
			h = u.basicBlock(w.Sub(fmt.Sprintf("transformer_blocks.%d", b)), h, ctx, heads)
		}
		if c.UseLinearProjection {
			h = nn.Linear(w.Sub("proj_out"), h)
			h = e.Permute(h.Reshape(n, hh, ww, ch), 0, 3, 1, 2)
		} else {
			h = e.Permute(h.Reshape(n, hh, ww, ch), 0, 3, 1, 2) // [N, C, H, W]
			h = nn.Conv2d(w.Sub("proj_out"), h, 1, 0)
		}
		return e.Add(h, x)
	}, x, ctx)
}

func (u *UNet) basicBlock(w *nn.Weights, h, ctx *gpu.Tensor, heads int) *gpu.Tensor {
	e := w.E
	a := nn.LayerNorm(w.Sub("norm1"), h, 1e-5)
	h = e.Add(Attention(w.Sub("attn1"), a, a, heads, false), h)
	a = nn.LayerNorm(w.Sub("norm2"), h, 1e-5)
	h = e.Add(Attention(w.Sub("attn2"), a, ctx, heads, false), h)
	a = nn.LayerNorm(w.Sub("norm3"), h, 1e-5)
	f := nn.Linear(w.Sub("ff.net.2"), e.GEGLU(nn.Linear(w.Sub("ff.net.0.proj"), a)))
	return e.Add(f, h)
}

// Attention is diffusers' Attention (and CLIP's self-attention with
// causal): q from x [N, Lq, C], k and v from ctx [N, Lk, Cctx], heads
// heads, softmax(q k^T / sqrt(d)) v, then to_out.0.
func Attention(w *nn.Weights, x, ctx *gpu.Tensor, heads int, causal bool) *gpu.Tensor {
	e := w.E
	q := nn.Linear(w.Sub("to_q"), x)   // [N, Lq, C]
	k := nn.Linear(w.Sub("to_k"), ctx) // [N, Lk, C]
	v := nn.Linear(w.Sub("to_v"), ctx)
	o := MultiHead(e, q, k, v, heads, causal) // [N, Lq, C]
	return nn.Linear(w.Sub("to_out.0"), o)
}

// MultiHead splits q [N, Lq, C], k, v [N, Lk, C] into heads, attends with
// scale 1/sqrt(C/heads) and merges the heads back: [N, Lq, C].
func MultiHead(e *gpu.Engine, q, k, v *gpu.Tensor, heads int, causal bool) *gpu.Tensor {
	n, lq, ch := q.Dim(0), q.Dim(1), q.Dim(2)
	lk := k.Dim(1)
	d := ch / heads
	split := func(t *gpu.Tensor, l int) *gpu.Tensor {
		return e.Permute(t.Reshape(n, l, heads, d), 0, 2, 1, 3) // [N, heads, L, d]
	}
	o := e.Attention(split(q, lq), split(k, lk), split(v, lk), float32(1/math.Sqrt(float64(d))), causal) // [N, heads, Lq, d]
	return e.Permute(o, 0, 2, 1, 3).Reshape(n, lq, ch)
}
