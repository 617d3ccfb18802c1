// Package vit is the timm-style VisionTransformer as BLIP's visual encoder
// (models/BLIP/vit.py) and DINO (facebookresearch/dino
// vision_transformer.py) define it: a strided-conv patch embedding, a class
// token, learned position embeddings, pre-LayerNorm blocks with a fused qkv
// projection and a GELU (erf) MLP, and a final LayerNorm.
//
// Parameters use the timm keys (cls_token, pos_embed, patch_embed.proj.*,
// blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*, norm.*);
// transformers' ViTModel layout converts through HFTable at load.
package vit

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// Config is what the weights cannot say, plus what is read from them.
type Config struct {
	// Heads is the attention head count; 0 means width/64 (ViT-S/B/L).
	Heads int
	// Eps is the LayerNorm epsilon; 0 means 1e-6 (BLIP, DINO and timm).
	Eps float32
	// InterpolatePos resizes the position embeddings for inputs whose patch
	// grid differs from the trained one (DINO and transformers'
	// interpolate_pos_encoding: bicubic, A = -0.75, see interp.go). When
	// false such inputs are an error (BLIP adds pos_embed as is).
	InterpolatePos bool

	// Read from the weights by New.
	Width, Depth, MLP, Patch, InChans int
	Grid                              int  // side of the trained patch grid: pos_embed holds 1 + Grid*Grid rows
	QKVBias                           bool // attn.qkv has a bias
}

// Model is a VisionTransformer over weights in the timm layout.
type Model struct {
	W   *nn.Weights
	Cfg Config
	// Taps keeps every block's output in Output.Blocks (tests, features).
	Taps bool

	interp map[[2]int]*gpu.Tensor // bicubic resampling matrices by output grid
}

// New builds the model over w (a view holding the timm keys), reading
// width, depth, MLP width, patch size, channels and grid from the weight
// shapes and checking every parameter's shape.
func New(w *nn.Weights, cfg Config) (*Model, error) {
	pe := w.Shape("patch_embed.proj.weight") // [D, C, P, P]
	pos := w.Shape("pos_embed")              // [1, 1+G*G, D]
	if len(pe) != 4 || pe[2] != pe[3] || len(pos) != 3 {
		return nil, fmt.Errorf("vit: %s and %s missing or misshapen (%v, %v): not a timm VisionTransformer",
			w.Key("patch_embed.proj.weight"), w.Key("pos_embed"), pe, pos)
	}
	cfg.Width, cfg.InChans, cfg.Patch = pe[0], pe[1], pe[2]
	g := int(math.Round(math.Sqrt(float64(pos[1] - 1))))
	if g*g != pos[1]-1 || pos[0] != 1 || pos[2] != cfg.Width {
		return nil, fmt.Errorf("vit: %s has shape %v: not 1 + a square grid of width %d", w.Key("pos_embed"), pos, cfg.Width)
	}
	cfg.Grid = g
	for cfg.Depth = 0; w.Has(fmt.Sprintf("blocks.%d.norm1.weight", cfg.Depth)); cfg.Depth++ {
	}
	if cfg.Depth == 0 {
		return nil, fmt.Errorf("vit: no blocks under %s", w.Key("blocks"))
	}
	if fc := w.Shape("blocks.0.mlp.fc1.weight"); len(fc) == 2 {
		cfg.MLP = fc[0]
	}
	cfg.QKVBias = w.Has("blocks.0.attn.qkv.bias")
	if cfg.Heads == 0 {
		cfg.Heads = max(1, cfg.Width/64)
	}
	if cfg.Width%cfg.Heads != 0 {
		return nil, fmt.Errorf("vit: width %d does not split into %d heads", cfg.Width, cfg.Heads)
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-6
	}
	d := cfg.Width
	checks := [][]any{
		{"cls_token", 1, 1, d}, {"patch_embed.proj.bias", d}, {"norm.weight", d}, {"norm.bias", d},
	}
	for i := 0; i < cfg.Depth; i++ {
		b := fmt.Sprintf("blocks.%d.", i)
		checks = append(checks,
			[]any{b + "norm1.weight", d}, []any{b + "norm1.bias", d},
			[]any{b + "attn.qkv.weight", 3 * d, d}, []any{b + "attn.proj.weight", d, d}, []any{b + "attn.proj.bias", d},
			[]any{b + "norm2.weight", d}, []any{b + "norm2.bias", d},
			[]any{b + "mlp.fc1.weight", cfg.MLP, d}, []any{b + "mlp.fc1.bias", cfg.MLP},
			[]any{b + "mlp.fc2.weight", d, cfg.MLP}, []any{b + "mlp.fc2.bias", d})
		if cfg.QKVBias {
			checks = append(checks, []any{b + "attn.qkv.bias", 3 * d})
		}
	}
	for _, c := range checks {
		shape := make([]int, len(c)-1)
		for i := range shape {
			shape[i] = c[i+1].(int)
		}
		if err := w.Expect(c[0].(string), shape...); err != nil {
			return nil, fmt.Errorf("vit: %w", err)
		}
	}
	return &Model{W: w, Cfg: cfg, interp: map[[2]int]*gpu.Tensor{}}, nil
}

// Release frees the cached interpolation matrices (the weights belong to
// whoever loaded them).
func (m *Model) Release() {
	for k, t := range m.interp {
		t.Release()
		delete(m.interp, k)
	}
}

// Output holds the encoder's results for pixels [B, C, H, W].
type Output struct {
	PatchEmbed *gpu.Tensor   // [B, P, D] patch_embed(x): conv + flatten, P = (H/p)(W/p)
	PosEmbed   *gpu.Tensor   // [1, 1+P, D] the position embeddings added: the pos_embed weight itself (do not Release) unless interpolated
	Tokens     *gpu.Tensor   // [B, 1+P, D] cat(cls, patches) + pos: the input of block 0
	Blocks     []*gpu.Tensor // [B, 1+P, D] each block's output (only with Taps; the last always)
	Last       *gpu.Tensor   // [B, 1+P, D] final LayerNorm output, class token first
}

// Token gathers token t of every sequence of x [B, N, D] as [B, D]
// (t = 0: the class token). Differentiable.
func Token(e *gpu.Engine, x *gpu.Tensor, t int) *gpu.Tensor {
	b, n, d := x.Dim(0), x.Dim(1), x.Dim(2)
	idx := make([]int32, b)
	for i := range idx {
		idx[i] = int32(i*n + t)
	}
	ids := e.NewIDs(idx, b)
	defer ids.Release()
	return e.Gather(x.Reshape(b*n, d), 0, ids) // [B, D]
}

// Forward encodes pixels [B, C, H, W] (already normalised). Gradients flow
// to the pixels when they require them.
func (m *Model) Forward(pixels *gpu.Tensor) (*Output, error) {
	c := m.Cfg
	w := m.W
	e := w.E
	sh := pixels.Shape()
	if len(sh) != 4 || sh[1] != c.InChans || sh[2] < c.Patch || sh[3] < c.Patch {
		return nil, fmt.Errorf("vit: pixels %v, want [B, %d, H >= %d, W >= %d]", sh, c.InChans, c.Patch, c.Patch)
	}
	b, gh, gw := sh[0], sh[2]/c.Patch, sh[3]/c.Patch
	if !c.InterpolatePos && (gh != c.Grid || gw != c.Grid) {
		return nil, fmt.Errorf("vit: %dx%d input gives a %dx%d patch grid; this model takes %dx%d pixels", sh[2], sh[3], gh, gw, c.Grid*c.Patch, c.Grid*c.Patch)
	}
	s := e.Scope()
	var pos *gpu.Tensor
	var err error
	// The stored table is used when the patch count matches and the input
	// is square (DINO and transformers test exactly this).
	if gh*gw == c.Grid*c.Grid && sh[2] == sh[3] {
		pos = w.Get("pos_embed")
	} else if pos, err = m.interpolatePos(sh[2], sh[3]); err != nil {
		s.Close()
		return nil, err
	}
	out := &Output{PosEmbed: pos}
	d, p := c.Width, gh*gw
	x := nn.Conv2d(w.Sub("patch_embed.proj"), pixels, c.Patch, 0) // [B, D, gh, gw]
	x = e.Permute(x.Reshape(b, d, p), 0, 2, 1)                    // [B, P, D]
	out.PatchEmbed = x
	cls := w.Get("cls_token") // [1, 1, D]
	if b > 1 {
		cls = e.Add(e.Zeros(b, 1, d), cls) // [B, 1, D]
	}
	x = e.Add(e.Concat(1, cls, x), pos) // [B, 1+P, D]
	out.Tokens = x
	for i := 0; i < c.Depth; i++ {
		x = m.block(w.Sub(fmt.Sprintf("blocks.%d", i)), x)
		if m.Taps || i == c.Depth-1 {
			out.Blocks = append(out.Blocks, x)
		}
	}
	out.Last = nn.LayerNorm(w.Sub("norm"), x, c.Eps)
	keep := append([]*gpu.Tensor{out.PatchEmbed, out.Tokens, out.Last, out.PosEmbed}, out.Blocks...)
	s.Close(keep...)
	return out, e.Err()
}

// block is x + attn(norm1(x)), then + mlp(norm2(x)).
func (m *Model) block(w *nn.Weights, x *gpu.Tensor) *gpu.Tensor {
	e, c := w.E, m.Cfg
	s := e.Scope()
	b, n, d := x.Dim(0), x.Dim(1), x.Dim(2)
	hd := d / c.Heads
	h := nn.LayerNorm(w.Sub("norm1"), x, c.Eps)
	qkv := nn.Linear(w.Sub("attn.qkv"), h)                            // [B, N, 3D]
	qkv = e.Permute(qkv.Reshape(b, n, 3, c.Heads, hd), 2, 0, 3, 1, 4) // [3, B, H, N, hd]
	parts := e.Split(qkv, 0, 1, 1, 1)                                 // 3 x [1, B, H, N, hd]
	q, k, v := parts[0].Reshape(b, c.Heads, n, hd), parts[1].Reshape(b, c.Heads, n, hd), parts[2].Reshape(b, c.Heads, n, hd)
	a := e.Attention(q, k, v, float32(1/math.Sqrt(float64(hd))), false) // [B, H, N, hd]
	a = e.Permute(a, 0, 2, 1, 3).Reshape(b, n, d)
	x = e.Add(x, nn.Linear(w.Sub("attn.proj"), a))
	h = nn.LayerNorm(w.Sub("norm2"), x, c.Eps)
	h = e.GELU(nn.Linear(w.Sub("mlp.fc1"), h))
	x = e.Add(x, nn.Linear(w.Sub("mlp.fc2"), h))
	s.Close(x)
	return x
}
