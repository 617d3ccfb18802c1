package clip

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// TextConfig is the part of transformers' CLIPTextConfig the model needs.
// Widths and depth come from the weights; the head count and activation
// from config.json (CLIP-L defaults otherwise).
type TextConfig struct {
	HiddenSize   int     `json:"hidden_size"`
	Heads        int     `json:"num_attention_heads"`
	Layers       int     `json:"num_hidden_layers"`
	Intermediate int     `json:"intermediate_size"`
	HiddenAct    string  `json:"hidden_act"`
	LayerNormEps float32 `json:"layer_norm_eps"`
	MaxPositions int     `json:"max_position_embeddings"`
	VocabSize    int     `json:"vocab_size"`
}

// ReadTextConfig reads a transformers config.json.
func ReadTextConfig(path string) (TextConfig, error) {
	c := TextConfig{HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// TextModel is transformers' CLIPTextModel: token + position embeddings, a
// stack of pre-LayerNorm transformer layers with causal self-attention and
// a quick-GELU MLP, and a final LayerNorm. Weights use the transformers keys
// under "text_model.".
type TextModel struct {
	W   *nn.Weights // at "text_model"
	Cfg TextConfig
}

// NewTextModel builds the model over w (the root holding "text_model.*"),
// deriving widths and depth from the weights.
func NewTextModel(w *nn.Weights, cfg TextConfig) (*TextModel, error) {
	tw := w.Sub("text_model")
	te := tw.Shape("embeddings.token_embedding.weight")
	pe := tw.Shape("embeddings.position_embedding.weight")
	if len(te) != 2 || len(pe) != 2 {
		return nil, fmt.Errorf("clip text: missing text_model.embeddings weights: not a CLIPTextModel")
	}
	cfg.VocabSize, cfg.HiddenSize, cfg.MaxPositions = te[0], te[1], pe[0]
	n := 0
	for tw.Has(fmt.Sprintf("encoder.layers.%d.layer_norm1.weight", n)) {
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("clip text: no encoder layers")
	}
	cfg.Layers = n
	if fc := tw.Shape("encoder.layers.0.mlp.fc1.weight"); len(fc) == 2 {
		cfg.Intermediate = fc[0]
	}
	if cfg.Heads == 0 {
		cfg.Heads = max(1, cfg.HiddenSize/64)
	}
	if cfg.HiddenSize%cfg.Heads != 0 {
		return nil, fmt.Errorf("clip text: width %d does not split into %d heads", cfg.HiddenSize, cfg.Heads)
	}
	if cfg.LayerNormEps == 0 {
		cfg.LayerNormEps = 1e-5
	}
	switch cfg.HiddenAct {
	case "", "quick_gelu", "gelu":
	default:
		return nil, fmt.Errorf("clip text: activation %q is not supported", cfg.HiddenAct)
	}
	return &TextModel{W: tw, Cfg: cfg}, nil
}

// TextOutput holds the encoder's results for ids [N, L].
type TextOutput struct {
	Embeddings  *gpu.Tensor // [N, L, D] token + position embeddings
	Last        *gpu.Tensor // [N, L, D] after the final LayerNorm (SD's conditioning)
	Penultimate *gpu.Tensor // [N, L, D] output of the second-to-last layer, before the final LayerNorm ("clip skip 2")
	Pooled      *gpu.Tensor // [N, D] Last at each sequence's first end token
}

// Forward encodes token ids ([N][L], L <= max positions).
func (m *TextModel) Forward(ids [][]int32) (*TextOutput, error) {
	e, w, c := m.W.E, m.W, m.Cfg
	n := len(ids)
	if n == 0 {
		return nil, fmt.Errorf("clip text: no sequences")
	}
	l := len(ids[0])
	if l > c.MaxPositions {
		return nil, fmt.Errorf("clip text: %d tokens exceed %d positions", l, c.MaxPositions)
	}
	flat := make([]int32, 0, n*l)
	pos := make([]int32, 0, n*l)
	eot := make([]int32, n)
	for i, s := range ids {
		if len(s) != l {
			return nil, fmt.Errorf("clip text: sequences of unequal length %d and %d", l, len(s))
		}
		eot[i] = -1
		for j, id := range s {
			if id < 0 || int(id) >= c.VocabSize {
				return nil, fmt.Errorf("clip text: token id %d outside the vocabulary of %d", id, c.VocabSize)
			}
			flat = append(flat, id)
			pos = append(pos, int32(j))
			if eot[i] < 0 && id == EndOfText {
				eot[i] = int32(i*l + j)
			}
		}
		if eot[i] < 0 {
			// transformers pools at argmax(ids) for the original vocabulary.
			best := 0
			for j, id := range s {
				if id > s[best] {
					best = j
				}
			}
			eot[i] = int32(i*l + best)
		}
	}
	out := &TextOutput{}
	s := e.Scope()
	tokIDs := e.NewIDs(flat, n, l)
	posIDs := e.NewIDs(pos, n, l)
	h := e.Add(e.Embedding(tokIDs, w.Get("embeddings.token_embedding.weight")), e.Embedding(posIDs, w.Get("embeddings.position_embedding.weight"))) // [N, L, D]
	out.Embeddings = h
	for i := 0; i < c.Layers; i++ {
		h = m.layer(w.Sub(fmt.Sprintf("encoder.layers.%d", i)), h)
		if i == c.Layers-2 {
			out.Penultimate = h
		}
	}
	if c.Layers == 1 {
		out.Penultimate = out.Embeddings
	}
	out.Last = nn.LayerNorm(w.Sub("final_layer_norm"), h, c.LayerNormEps)
	eotIDs := e.NewIDs(eot, n)
	out.Pooled = e.Embedding(eotIDs, out.Last.Reshape(n*l, c.HiddenSize)) // [N, D]
	s.Close(out.Embeddings, out.Last, out.Penultimate, out.Pooled)
	return out, e.Err()
}

func (m *TextModel) layer(w *nn.Weights, x *gpu.Tensor) *gpu.Tensor {
	return encoderLayer(w, x, m.Cfg.Heads, m.Cfg.HiddenAct, m.Cfg.LayerNormEps, true)
}

// encoderLayer is one pre-LayerNorm CLIPEncoderLayer on x [N, L, D]:
// x += out_proj(attention(layer_norm1(x))), x += fc2(act(fc1(layer_norm2(x)))),
// with act "gelu" (erf) or quick-GELU (anything else) and a causal mask for
// the text tower.
func encoderLayer(w *nn.Weights, x *gpu.Tensor, heads int, act string, eps float32, causal bool) *gpu.Tensor {
	e := w.E
	n, l, d := x.Dim(0), x.Dim(1), x.Dim(2)
	h := nn.LayerNorm(w.Sub("layer_norm1"), x, eps)
	q := nn.Linear(w.Sub("self_attn.q_proj"), h)
	k := nn.Linear(w.Sub("self_attn.k_proj"), h)
	v := nn.Linear(w.Sub("self_attn.v_proj"), h)
	hd := d / heads
	split := func(t *gpu.Tensor) *gpu.Tensor { return e.Permute(t.Reshape(n, l, heads, hd), 0, 2, 1, 3) }
	a := e.Attention(split(q), split(k), split(v), float32(1/math.Sqrt(float64(hd))), causal) // [N, H, L, hd]
	a = e.Permute(a, 0, 2, 1, 3).Reshape(n, l, d)
	x = e.Add(x, nn.Linear(w.Sub("self_attn.out_proj"), a))
	h = nn.LayerNorm(w.Sub("layer_norm2"), x, eps)
	h = nn.Linear(w.Sub("mlp.fc1"), h)
	if act == "gelu" {
		h = e.GELU(h)
	} else {
		h = e.QuickGELU(h)
	}
	return e.Add(x, nn.Linear(w.Sub("mlp.fc2"), h))
}
