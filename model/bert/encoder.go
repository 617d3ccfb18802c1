package bert

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/nn"
)

// Config is the part of BLIP's med_config.json (a BertConfig) the encoder
// needs. Widths, depth and vocabulary come from the weights; the head
// count, activation and epsilon from the file (defaults: hidden/64 heads,
// "gelu", 1e-12).
type Config struct {
	Hidden       int     `json:"hidden_size"`
	Heads        int     `json:"num_attention_heads"`
	Layers       int     `json:"num_hidden_layers"`
	Intermediate int     `json:"intermediate_size"`
	HiddenAct    string  `json:"hidden_act"`
	Eps          float32 `json:"layer_norm_eps"`
	MaxPositions int     `json:"max_position_embeddings"`
	Vocab        int     `json:"vocab_size"`
	// EncoderWidth is the width of the cross-attended image tokens (BLIP
	// overwrites the file's value with the ViT width; so does New, from
	// the crossattention key weights).
	EncoderWidth int `json:"encoder_width"`
	// CrossAttention reports layers with a crossattention block (read from
	// the weights).
	CrossAttention bool `json:"-"`
}

// ReadConfig reads a med_config.json / BertConfig file.
func ReadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Encoder is BLIP's med.py BertModel (add_pooling_layer=False) in
// multimodal mode: word + absolute position embeddings (no token types)
// and LayerNorm, then post-LayerNorm layers of
//
//	h = LN(h + dense(SelfAttn(h)))                   self-attention with the padding mask
//	h = LN(h + dense(CrossAttn(q = h, kv = image)))   cross-attention over every image token
//	h = LN(h + dense2(act(dense1(h))))
//
// Self-attention scores are q k^T / sqrt(hd) + (1 - mask) * -10000 (med.py's
// constant; padded keys are masked, padded queries still computed). Keys
// are transformers' under the view W ("embeddings.*", "encoder.layer.N.*").
type Encoder struct {
	W   *nn.Weights
	Cfg Config
	// Taps keeps every layer's intermediate outputs in Output.
	Taps bool
}

// New builds the encoder over w, reading sizes from the weights and
// checking every parameter's shape.
func New(w *nn.Weights, cfg Config) (*Encoder, error) {
	we := w.Shape("embeddings.word_embeddings.weight")
	pe := w.Shape("embeddings.position_embeddings.weight")
	if len(we) != 2 || len(pe) != 2 || we[1] != pe[1] {
		return nil, fmt.Errorf("bert: %s / %s missing or misshapen (%v, %v): not a BERT encoder",
			w.Key("embeddings.word_embeddings.weight"), w.Key("embeddings.position_embeddings.weight"), we, pe)
	}
	cfg.Vocab, cfg.Hidden, cfg.MaxPositions = we[0], we[1], pe[0]
	for cfg.Layers = 0; w.Has(fmt.Sprintf("encoder.layer.%d.attention.self.query.weight", cfg.Layers)); cfg.Layers++ {
	}
	if cfg.Layers == 0 {
		return nil, fmt.Errorf("bert: no layers under %s", w.Key("encoder.layer"))
	}
	if s := w.Shape("encoder.layer.0.intermediate.dense.weight"); len(s) == 2 {
		cfg.Intermediate = s[0]
	}
	cfg.CrossAttention = w.Has("encoder.layer.0.crossattention.self.key.weight")
	if s := w.Shape("encoder.layer.0.crossattention.self.key.weight"); len(s) == 2 {
		cfg.EncoderWidth = s[1]
	}
	if cfg.Heads == 0 {
		cfg.Heads = max(1, cfg.Hidden/64)
	}
	if cfg.Hidden%cfg.Heads != 0 {
		return nil, fmt.Errorf("bert: width %d does not split into %d heads", cfg.Hidden, cfg.Heads)
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-12
	}
	switch cfg.HiddenAct {
	case "":
		cfg.HiddenAct = "gelu"
	case "gelu", "gelu_new", "gelu_pytorch_tanh":
	default:
		return nil, fmt.Errorf("bert: activation %q is not supported", cfg.HiddenAct)
	}
	d, f := cfg.Hidden, cfg.Intermediate
	shapes := map[string][]int{"embeddings.LayerNorm.weight": {d}, "embeddings.LayerNorm.bias": {d}}
	lin := func(name string, out, in int) {
		shapes[name+".weight"], shapes[name+".bias"] = []int{out, in}, []int{out}
	}
	for i := 0; i < cfg.Layers; i++ {
		l := fmt.Sprintf("encoder.layer.%d.", i)
		blocks := []string{"attention"}
		if cfg.CrossAttention {
			blocks = append(blocks, "crossattention")
		}
		for _, a := range blocks {
			kin := d
			if a == "crossattention" {
				kin = cfg.EncoderWidth
			}
			lin(l+a+".self.query", d, d)
			lin(l+a+".self.key", d, kin)
			lin(l+a+".self.value", d, kin)
			lin(l+a+".output.dense", d, d)
			shapes[l+a+".output.LayerNorm.weight"], shapes[l+a+".output.LayerNorm.bias"] = []int{d}, []int{d}
		}
		lin(l+"intermediate.dense", f, d)
		lin(l+"output.dense", d, f)
		shapes[l+"output.LayerNorm.weight"], shapes[l+"output.LayerNorm.bias"] = []int{d}, []int{d}
	}
	for k, s := range shapes {
		if err := w.Expect(k, s...); err != nil {
			return nil, fmt.Errorf("bert: %w", err)
		}
	}
	return &Encoder{W: w, Cfg: cfg}, nil
}

// Output holds the encoder's results for a batch [B, L].
type Output struct {
	Embeddings *gpu.Tensor // [B, L, D] LN(word + position embeddings)
	// Per layer, with Taps (the last layer's output is always Last):
	SelfAttn  []*gpu.Tensor // [B, L, D] after the self-attention block's LayerNorm
	CrossAttn []*gpu.Tensor // [B, L, D] after the cross-attention block's LayerNorm
	Layers    []*gpu.Tensor // [B, L, D] layer outputs
	Last      *gpu.Tensor   // [B, L, D] last_hidden_state
}

// Forward encodes ids and mask ([B][L], L <= max positions; mask 1 for
// real tokens, 0 for padding) attending to image [B, Ni, EncoderWidth]
// (nil runs the text-only mode, skipping cross-attention). Gradients flow
// to image (and to the weights that require them).
func (m *Encoder) Forward(ids, mask [][]int32, image *gpu.Tensor) (*Output, error) {
	e, w, c := m.W.E, m.W, m.Cfg
	b := len(ids)
	if b == 0 || len(mask) != b {
		return nil, fmt.Errorf("bert: %d id rows and %d mask rows", b, len(mask))
	}
	l := len(ids[0])
	if l == 0 || l > c.MaxPositions {
		return nil, fmt.Errorf("bert: sequence length %d not in [1, %d]", l, c.MaxPositions)
	}
	if image != nil {
		if !c.CrossAttention {
			return nil, fmt.Errorf("bert: image tokens given to an encoder without cross-attention")
		}
		if s := image.Shape(); len(s) != 3 || s[0] != b || s[2] != c.EncoderWidth {
			return nil, fmt.Errorf("bert: image tokens %v, want [%d, N, %d]", s, b, c.EncoderWidth)
		}
	}
	flat := make([]int32, 0, b*l)
	pos := make([]int32, 0, b*l)
	bias := make([]float32, 0, b*l) // (1 - mask) * -10000
	for i := range ids {
		if len(ids[i]) != l || len(mask[i]) != l {
			return nil, fmt.Errorf("bert: row %d has %d ids and %d mask entries, want %d", i, len(ids[i]), len(mask[i]), l)
		}
		for j, id := range ids[i] {
			if id < 0 || int(id) >= c.Vocab {
				return nil, fmt.Errorf("bert: token id %d outside the vocabulary of %d", id, c.Vocab)
			}
			flat = append(flat, id)
			pos = append(pos, int32(j))
			bias = append(bias, float32(1-mask[i][j])*-10000)
		}
	}
	out := &Output{}
	s := e.Scope()
	tok, ps := e.NewIDs(flat, b, l), e.NewIDs(pos, b, l)
	defer tok.Release()
	defer ps.Release()
	h := e.Add(e.Embedding(tok, w.Get("embeddings.word_embeddings.weight")), e.Embedding(ps, w.Get("embeddings.position_embeddings.weight"))) // [B, L, D]
	h = nn.LayerNorm(w.Sub("embeddings.LayerNorm"), h, c.Eps)
	out.Embeddings = h
	maskBias := e.FromSlice(bias, b, 1, 1, l) // [B, 1, 1, L]
	keep := []*gpu.Tensor{h}
	for i := 0; i < c.Layers; i++ {
		lw := w.Sub(fmt.Sprintf("encoder.layer.%d", i))
		h = m.attention(lw.Sub("attention"), h, h, maskBias)
		if m.Taps {
			out.SelfAttn = append(out.SelfAttn, h)
		}
		if image != nil {
			h = m.attention(lw.Sub("crossattention"), h, image, nil)
			if m.Taps {
				out.CrossAttn = append(out.CrossAttn, h)
			}
		}
		h = m.feedForward(lw, h)
		if m.Taps {
			out.Layers = append(out.Layers, h)
		}
	}
	out.Last = h
	keep = append(append(append(append(keep, out.SelfAttn...), out.CrossAttn...), out.Layers...), h)
	s.Close(keep...)
	return out, e.Err()
}

// attention is LN(x + dense(softmax(q k^T / sqrt(hd) + bias) v)) with q
// from x and k, v from kv (x itself, or the image tokens); bias [B,1,1,Lk]
// or nil.
func (m *Encoder) attention(w *nn.Weights, x, kv, bias *gpu.Tensor) *gpu.Tensor {
	e, c := w.E, m.Cfg
	s := e.Scope()
	b, lq, d := x.Dim(0), x.Dim(1), x.Dim(2)
	lk := kv.Dim(1)
	hd := d / c.Heads
	heads := func(t *gpu.Tensor, n int) *gpu.Tensor {
		return e.Permute(t.Reshape(b, n, c.Heads, hd), 0, 2, 1, 3) // [B, H, n, hd]
	}
	q := heads(nn.Linear(w.Sub("self.query"), x), lq)
	k := heads(nn.Linear(w.Sub("self.key"), kv), lk)
	v := heads(nn.Linear(w.Sub("self.value"), kv), lk)
	scale := float32(1 / math.Sqrt(float64(hd)))
	var a *gpu.Tensor
	if bias == nil {
		a = e.Attention(q, k, v, scale, false) // [B, H, Lq, hd]
	} else {
		// The flash kernel has no padding mask: scores, bias, softmax.
		sc := e.Add(e.Scale(e.MatMul(q, k, false, true), scale), bias) // [B, H, Lq, Lk]
		a = e.MatMul(e.Softmax(sc), v, false, false)                   // [B, H, Lq, hd]
	}
	a = e.Permute(a, 0, 2, 1, 3).Reshape(b, lq, d)
	y := nn.LayerNorm(w.Sub("output.LayerNorm"), e.Add(x, nn.Linear(w.Sub("output.dense"), a)), c.Eps)
	s.Close(y)
	return y
}

// feedForward is LN(h + dense2(act(dense1(h)))).
func (m *Encoder) feedForward(w *nn.Weights, h *gpu.Tensor) *gpu.Tensor {
	e, c := w.E, m.Cfg
	s := e.Scope()
	f := nn.Linear(w.Sub("intermediate.dense"), h)
	if c.HiddenAct == "gelu" {
		f = e.GELU(f)
	} else {
		f = e.GELUTanh(f)
	}
	y := nn.LayerNorm(w.Sub("output.LayerNorm"), e.Add(h, nn.Linear(w.Sub("output.dense"), f)), c.Eps)
	s.Close(y)
	return y
}
