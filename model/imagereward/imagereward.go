// Package imagereward is ImageReward (THUDM/ImageReward): a BLIP ViT
// encodes the image, BLIP's BERT encodes the prompt while cross-attending
// to the image tokens, and a five-layer linear head (no activations) maps
// the [CLS] feature to a raw score, normalised as
// (raw - 0.16717362830052426) / 1.0333394966054072.
//
// The checkpoint is ImageReward.pt (torch.save of the state_dict, read by
// model/torchpt without running pickle code) or the same tensors as
// safetensors, with ImageReward's own keys: blip.visual_encoder.* (timm
// ViT), blip.text_encoder.* (med.py BERT), mlp.layers.{0,2,4,6,7}.*.
// Everything is differentiable with respect to the pixels (ReFL).
package imagereward

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/bert"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/torchpt"
	"github.com/instructbooth/instructbooth/model/vit"
)

// Constants of ImageReward-v1.0.
const (
	RewardMean = 0.16717362830052426
	RewardStd  = 1.0333394966054072
	// MaxLength is the tokenizer's max_length (padding and truncation).
	MaxLength = 35
)

// PixelMean and PixelStd are the CLIP normalisation of ImageReward's
// _transform (after resizing the shorter side to ImageSize with PIL
// bicubic, center-cropping and scaling to [0, 1]).
var (
	PixelMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	PixelStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// Options say where the configuration and vocabulary are.
type Options struct {
	// ConfigDir holds med_config.json (BLIP's BertConfig: heads, eps) and
	// optionally a config.json with "vit": {"num_heads", "layer_norm_eps"}.
	// Default: the checkpoint's folder. Without them the ViT has width/64
	// heads and eps 1e-6, BERT hidden/64 heads and eps 1e-12 (the values
	// of ImageReward-v1.0).
	ConfigDir string
	// VocabPath is bert-base-uncased's vocab.txt (or its folder). Default:
	// ConfigDir/vocab.txt, the checkpoint's folder, then
	// $INSTRUCTBOOTH_BERT_VOCAB. Without one, Score fails but Forward
	// (token ids) works.
	VocabPath string
}

// Model is a loaded ImageReward.
type Model struct {
	W    *nn.Weights // ImageReward's keys
	ViT  *vit.Model
	Text *bert.Encoder
	Tok  *bert.Tokenizer // nil when no vocabulary was found
	// MLP lists the head's Linear modules in order (e.g. "mlp.layers.0").
	MLP  []string
	Path string
}

type fileConfig struct {
	ViT struct {
		Heads int      `json:"num_heads"`
		Eps   *float64 `json:"layer_norm_eps"`
	} `json:"vit"`
}

// Load reads an ImageReward checkpoint (.pt or .safetensors, by content).
func Load(e *gpu.Engine, path string, opt Options) (*Model, error) {
	dir := opt.ConfigDir
	if dir == "" {
		dir = filepath.Dir(path)
	}
	var tc bert.Config
	if p := filepath.Join(dir, "med_config.json"); exists(p) {
		var err error
		if tc, err = bert.ReadConfig(p); err != nil {
			return nil, fmt.Errorf("imagereward: %w", err)
		}
	}
	vc := vit.Config{Eps: 1e-6}
	if p := filepath.Join(dir, "config.json"); exists(p) {
		var fc fileConfig
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("imagereward: %w", err)
		}
		if err := json.Unmarshal(b, &fc); err != nil {
			return nil, fmt.Errorf("imagereward: %s: %w", p, err)
		}
		vc.Heads = fc.ViT.Heads
		if fc.ViT.Eps != nil {
			vc.Eps = float32(*fc.ViT.Eps)
		}
	}
	ck, err := torchpt.OpenCheckpoint(path)
	if err != nil {
		return nil, fmt.Errorf("imagereward: %w", err)
	}
	defer ck.Close()
	w, err := vit.LoadWeights(e, ck, path, Table)
	if err != nil {
		return nil, fmt.Errorf("imagereward: %w", err)
	}
	m, err := build(w, vc, tc)
	if err != nil {
		w.Release()
		return nil, fmt.Errorf("imagereward: %s: %w", path, err)
	}
	m.Path = path
	for _, p := range []string{opt.VocabPath, filepath.Join(dir, "vocab.txt"), filepath.Join(filepath.Dir(path), "vocab.txt"), os.Getenv("INSTRUCTBOOTH_BERT_VOCAB")} {
		if p == "" || !exists(p) {
			if p != "" && p == opt.VocabPath {
				m.Release()
				return nil, fmt.Errorf("imagereward: vocabulary %s not found", p)
			}
			continue
		}
		if m.Tok, err = bert.LoadTokenizer(p); err != nil {
			m.Release()
			return nil, fmt.Errorf("imagereward: %w", err)
		}
		break
	}
	return m, nil
}

// Table keeps the tensors ImageReward uses: the visual encoder, the text
// encoder (without its position_ids buffer) and the head; BLIP's unused
// vision_proj/text_proj are skipped.
func Table(k string) (vit.Target, bool) {
	if strings.HasPrefix(k, "blip.visual_encoder.") || strings.HasPrefix(k, "mlp.layers.") ||
		strings.HasPrefix(k, "blip.text_encoder.") && !strings.HasSuffix(k, ".position_ids") {
		return vit.Target{Key: k}, true
	}
	return vit.Target{}, false
}

func build(w *nn.Weights, vc vit.Config, tc bert.Config) (*Model, error) {
	v, err := vit.New(w.Sub("blip.visual_encoder"), vc)
	if err != nil {
		return nil, err
	}
	t, err := bert.New(w.Sub("blip.text_encoder"), tc)
	if err != nil {
		return nil, err
	}
	if !t.Cfg.CrossAttention || t.Cfg.EncoderWidth != v.Cfg.Width {
		return nil, fmt.Errorf("the text encoder cross-attends to width %d, the ViT is %d wide", t.Cfg.EncoderWidth, v.Cfg.Width)
	}
	m := &Model{W: w, ViT: v, Text: t}
	var idx []int
	for _, k := range w.Keys() {
		if rest, ok := strings.CutPrefix(k, "mlp.layers."); ok && strings.HasSuffix(rest, ".weight") {
			n, err := strconv.Atoi(strings.TrimSuffix(rest, ".weight"))
			if err != nil {
				return nil, fmt.Errorf("unexpected head key %q", k)
			}
			idx = append(idx, n)
		}
	}
	sort.Ints(idx)
	in := t.Cfg.Hidden
	for _, n := range idx {
		name := fmt.Sprintf("mlp.layers.%d", n)
		s := w.Shape(name + ".weight")
		if len(s) != 2 || s[1] != in {
			return nil, fmt.Errorf("head layer %s.weight has shape %v, want [*, %d]", name, s, in)
		}
		if err := w.Expect(name+".bias", s[0]); err != nil {
			return nil, err
		}
		in = s[0]
		m.MLP = append(m.MLP, name)
	}
	if len(m.MLP) == 0 || in != 1 {
		return nil, fmt.Errorf("no linear head mlp.layers.* ending in one output (found %d layers)", len(m.MLP))
	}
	return m, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Release frees the weights.
func (m *Model) Release() {
	m.ViT.Release()
	m.W.Release()
}

// ImageSize is the side of the square pixel input (224 for v1.0).
func (m *Model) ImageSize() int { return m.ViT.Cfg.Grid * m.ViT.Cfg.Patch }

// Output holds a forward pass over N (prompt, image) pairs.
type Output struct {
	ImageEmbeds *gpu.Tensor  // [I, 1+P, Dv] visual encoder output per input image
	Text        *bert.Output // per pair: last_hidden_state [N, L, D] (taps with Text.Taps)
	TxtFeatures *gpu.Tensor  // [N, D] the [CLS] state: the head's input
	MLPRaw      *gpu.Tensor  // [N] head output before normalisation
	Reward      *gpu.Tensor  // [N] (MLPRaw - RewardMean) / RewardStd
}

// Forward scores N pairs: row n of enc with image imageOf[n] of pixels
// [I, 3, S, S] (normalised; S = ImageSize). imageOf nil pairs row n with
// image n. Gradients flow to the pixels when they require them.
func (m *Model) Forward(enc bert.Encoded, pixels *gpu.Tensor, imageOf []int) (*Output, error) {
	e := m.W.E
	n := len(enc.IDs)
	sh := pixels.Shape()
	if len(sh) != 4 {
		return nil, fmt.Errorf("imagereward: pixels %v, want [I, 3, %d, %d]", sh, m.ImageSize(), m.ImageSize())
	}
	if imageOf == nil {
		if sh[0] != n {
			return nil, fmt.Errorf("imagereward: %d prompts for %d images", n, sh[0])
		}
	} else if len(imageOf) != n {
		return nil, fmt.Errorf("imagereward: %d image indices for %d prompts", len(imageOf), n)
	}
	idx := make([]int32, n)
	identity := sh[0] == n
	for i := range idx {
		idx[i] = int32(i)
		if imageOf != nil {
			if imageOf[i] < 0 || imageOf[i] >= sh[0] {
				return nil, fmt.Errorf("imagereward: image index %d of %d images", imageOf[i], sh[0])
			}
			idx[i] = int32(imageOf[i])
			identity = identity && imageOf[i] == i
		}
	}
	s := e.Scope()
	vo, err := m.ViT.Forward(pixels)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("imagereward: %w", err)
	}
	out := &Output{ImageEmbeds: vo.Last}
	img := vo.Last
	if !identity {
		ids := e.NewIDs(idx, n)
		img = e.Gather(img, 0, ids) // [N, 1+P, Dv]
		ids.Release()
	}
	if out.Text, err = m.Text.Forward(enc.IDs, enc.Mask, img); err != nil {
		s.Close()
		return nil, fmt.Errorf("imagereward: %w", err)
	}
	out.TxtFeatures = vit.Token(e, out.Text.Last, 0) // [N, D]
	x := out.TxtFeatures
	for _, name := range m.MLP {
		x = nn.Linear(m.W.Sub(name), x) // no activation between layers
	}
	out.MLPRaw = x.Reshape(n)
	out.Reward = e.Scale(e.Sub(out.MLPRaw, e.Full(RewardMean, 1)), 1/RewardStd)
	t := out.Text
	keep := []*gpu.Tensor{out.ImageEmbeds, out.TxtFeatures, out.MLPRaw, out.Reward, t.Embeddings, t.Last}
	keep = append(append(append(keep, t.SelfAttn...), t.CrossAttn...), t.Layers...)
	s.Close(keep...)
	return out, e.Err()
}

// Encode tokenizes prompts as ImageReward does (max length 35, padded).
func (m *Model) Encode(prompts []string) (bert.Encoded, error) {
	if m.Tok == nil {
		return bert.Encoded{}, fmt.Errorf("imagereward: no BERT vocabulary loaded (Options.VocabPath or $INSTRUCTBOOTH_BERT_VOCAB)")
	}
	return m.Tok.Encode(prompts, MaxLength)
}

// Score returns the rewards [N] of prompts against pixels [N, 3, S, S]
// (normalised with PixelMean/PixelStd): prompt i with image i, or one
// prompt with every image, or every prompt with one image. This is
// ImageReward.score / score_gard batched; differentiable in the pixels.
func (m *Model) Score(prompts []string, pixels *gpu.Tensor) (*gpu.Tensor, error) {
	if len(prompts) == 0 || len(pixels.Shape()) == 0 {
		return nil, fmt.Errorf("imagereward: nothing to score")
	}
	ni := pixels.Shape()[0]
	var imageOf []int
	switch {
	case len(prompts) == ni:
	case len(prompts) == 1:
		p := prompts[0]
		prompts = make([]string, ni)
		for i := range prompts {
			prompts[i] = p
		}
	case ni == 1:
		imageOf = make([]int, len(prompts))
	default:
		return nil, fmt.Errorf("imagereward: %d prompts for %d images", len(prompts), ni)
	}
	enc, err := m.Encode(prompts)
	if err != nil {
		return nil, err
	}
	e := m.W.E
	s := e.Scope()
	out, err := m.Forward(enc, pixels, imageOf)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Close(out.Reward)
	return out.Reward, nil
}

// Normalize maps images in [0, 1] ([N, 3, H, W]) to the model's input
// scale, (x - PixelMean) / PixelStd per channel, differentiably (the last
// step of ReFL's preprocessing, after a differentiable resize and crop).
func Normalize(e *gpu.Engine, x *gpu.Tensor) *gpu.Tensor {
	mean := e.FromSlice(PixelMean[:], 1, 3, 1, 1)
	inv := make([]float32, 3)
	for i, s := range PixelStd {
		inv[i] = 1 / s
	}
	return e.Mul(e.Sub(x, mean), e.FromSlice(inv, 1, 3, 1, 1))
}
