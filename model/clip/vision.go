package clip

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// VisionConfig is the part of transformers' CLIPVisionConfig the model
// needs. Widths, depth, patch and image size come from the weights; the
// head count, activation and LayerNorm eps from config.json.
type VisionConfig struct {
	HiddenSize   int     `json:"hidden_size"`
	Heads        int     `json:"num_attention_heads"`
	Layers       int     `json:"num_hidden_layers"`
	Intermediate int     `json:"intermediate_size"`
	HiddenAct    string  `json:"hidden_act"`
	LayerNormEps float32 `json:"layer_norm_eps"`
	ImageSize    int     `json:"image_size"`
	PatchSize    int     `json:"patch_size"`
}

// VisionModel is transformers' CLIPVisionTransformer: a patch convolution
// (no bias) with a class token and learned position embeddings,
// pre_layrnorm, pre-LayerNorm encoder layers (no mask), and
// post_layernorm on the class token. Weights use the transformers keys
// under "vision_model.".
type VisionModel struct {
	W   *nn.Weights // at "vision_model"
	Cfg VisionConfig
}

// NewVisionModel builds the tower over w (the root holding
// "vision_model.*"), deriving width, depth, patch and image size from the
// weights. A zero Heads means transformers' default, 12.
func NewVisionModel(w *nn.Weights, cfg VisionConfig) (*VisionModel, error) {
	vw := w.Sub("vision_model")
	pe := vw.Shape("embeddings.patch_embedding.weight")
	pos := vw.Shape("embeddings.position_embedding.weight")
	ce := vw.Shape("embeddings.class_embedding")
	if len(pe) != 4 || len(pos) != 2 || len(ce) != 1 {
		return nil, fmt.Errorf("clip vision: missing vision_model.embeddings weights: not a CLIPVisionModel")
	}
	if pe[1] != 3 || pe[2] != pe[3] || ce[0] != pe[0] || pos[1] != pe[0] {
		return nil, fmt.Errorf("clip vision: inconsistent embeddings: patch %v, class %v, position %v", pe, ce, pos)
	}
	cfg.HiddenSize, cfg.PatchSize = pe[0], pe[2]
	grid := int(math.Round(math.Sqrt(float64(pos[0] - 1))))
	if grid*grid != pos[0]-1 {
		return nil, fmt.Errorf("clip vision: %d position embeddings are not a square grid plus the class token", pos[0])
	}
	cfg.ImageSize = grid * cfg.PatchSize
	n := 0
	for vw.Has(fmt.Sprintf("encoder.layers.%d.layer_norm1.weight", n)) {
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("clip vision: no encoder layers")
	}
	cfg.Layers = n
	if fc := vw.Shape("encoder.layers.0.mlp.fc1.weight"); len(fc) == 2 {
		cfg.Intermediate = fc[0]
	}
	if cfg.Heads == 0 {
		cfg.Heads = 12
	}
	if cfg.HiddenSize%cfg.Heads != 0 {
		return nil, fmt.Errorf("clip vision: width %d does not split into %d heads", cfg.HiddenSize, cfg.Heads)
	}
	if cfg.LayerNormEps == 0 {
		cfg.LayerNormEps = 1e-5
	}
	switch cfg.HiddenAct {
	case "":
		cfg.HiddenAct = "quick_gelu"
	case "quick_gelu", "gelu":
	default:
		return nil, fmt.Errorf("clip vision: activation %q is not supported", cfg.HiddenAct)
	}
	for _, k := range []string{"pre_layrnorm.weight", "post_layernorm.weight"} {
		if !vw.Has(k) {
			return nil, fmt.Errorf("clip vision: missing weight %q", vw.Key(k))
		}
	}
	return &VisionModel{W: vw, Cfg: cfg}, nil
}

// VisionOutput holds the tower's results for pixels [N, 3, S, S].
type VisionOutput struct {
	Embeddings *gpu.Tensor // [N, T, D] class token + patches, plus position embeddings (T = 1 + (S/P)^2)
	PreLN      *gpu.Tensor // [N, T, D] after pre_layrnorm (encoder input)
	Last       *gpu.Tensor // [N, T, D] encoder output (before post_layernorm)
	Pooled     *gpu.Tensor // [N, D] post_layernorm of the class token
}

// Forward runs the tower on normalised pixels [N, 3, S, S], S the
// checkpoint's image size (transformers' CLIP does not interpolate
// position embeddings).
func (m *VisionModel) Forward(pixels *gpu.Tensor) (*VisionOutput, error) {
	e, w, c := m.W.E, m.W, m.Cfg
	sh := pixels.Shape()
	if len(sh) != 4 || sh[1] != 3 || sh[2] != c.ImageSize || sh[3] != c.ImageSize {
		return nil, fmt.Errorf("clip vision: pixels %v, want [N, 3, %d, %d]", sh, c.ImageSize, c.ImageSize)
	}
	n, d := sh[0], c.HiddenSize
	g := c.ImageSize / c.PatchSize
	t := g*g + 1
	out := &VisionOutput{}
	s := e.Scope()
	p := e.Conv2d(pixels, w.Get("embeddings.patch_embedding.weight"), nil, c.PatchSize, 0) // [N, D, g, g]
	p = e.Permute(p.Reshape(n, d, g*g), 0, 2, 1)                                           // [N, g*g, D]
	zeros := make([]int32, n)
	cls := e.Embedding(e.NewIDs(zeros, n, 1), w.Get("embeddings.class_embedding").Reshape(1, d)) // [N, 1, D]
	x := e.Concat(1, cls, p)                                                                     // [N, T, D]
	x = e.Add(x, w.Get("embeddings.position_embedding.weight"))                                  // + [T, D]
	out.Embeddings = x
	x = nn.LayerNorm(w.Sub("pre_layrnorm"), x, c.LayerNormEps)
	out.PreLN = x
	for i := 0; i < c.Layers; i++ {
		x = encoderLayer(w.Sub(fmt.Sprintf("encoder.layers.%d", i)), x, c.Heads, c.HiddenAct, c.LayerNormEps, false)
	}
	out.Last = x
	first := make([]int32, n)
	for i := range first {
		first[i] = int32(i * t)
	}
	cl := e.Embedding(e.NewIDs(first, n), x.Reshape(n*t, d)) // [N, D]
	out.Pooled = nn.LayerNorm(w.Sub("post_layernorm"), cl, c.LayerNormEps)
	s.Close(out.Embeddings, out.PreLN, out.Last, out.Pooled)
	return out, e.Err()
}
