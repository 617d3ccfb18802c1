package toyworld

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

// ModelConfig is the toy base model's architecture: SD 1.x's three models
// (CLIPTextModel, UNet2DConditionModel, AutoencoderKL) with small widths.
// The VAE keeps SD's factor 8 (four levels), so a 64x64 image has an 8x8
// latent and the model samples through generate.Generate at Width = Height
// = 64 like any SD 1.x checkpoint.
type ModelConfig struct {
	Text clip.TextConfig
	UNet sd.UNetConfig // complete (derived fields set), as UNetSchema wants
	VAE  sd.VAEConfig  // an AutoencoderKL's shape, when Codec is 0
	// Codec, when not 0, replaces the AutoencoderKL by a fixed pixel codec
	// (sd.NewPixelCodec) with patches of this side.
	Codec int
	// ImageSize is the side of the model's images in pixels.
	ImageSize int
	// Prediction is the U-Net's target (scheduler prediction_type):
	// sched.PredictV or sched.PredictEpsilon ("" = epsilon).
	Prediction string
}

// DefaultModelConfig is the configuration chosen from the measurements in
// bench_test.go (see the package documentation): a 2-layer, 64-wide text
// encoder over the toy vocabulary, a two-level U-Net (64/64 channels, one
// resnet per level, cross-attention at the 4x4 level and the mid block
// only, like SD 1.x's attention-free deepest level turned around) on
// 8x8x48 latents, and a pixel codec with 4x4 patches in place of the VAE
// on 32x32 images: no autoencoder to train, and exact reconstructions.
// The first level is wider than the 48 latent channels on purpose: an
// epsilon-predicting U-Net must carry the noise of every channel from
// conv_in to conv_out, and a 32-wide first level (tried first) could not,
// leaving the prediction error at 0.44 even at t = 999, where it is
// nearly the identity, and the samples pure noise. The U-Net predicts v
// (SD 2.x's v_prediction) rather than eps: with eps, even the 64-wide
// model's samples stayed noise after 700 steps, because at high noise
// levels x_0 is read off eps scaled by up to 1/sqrt(abar) = 14.6, while v
// there is about -x_0, smooth and easy, and eps is recovered from v with
// the identity built in (sqrt(1-abar) x_t + sqrt(abar) v).
func DefaultModelConfig() ModelConfig {
	u := unetConfig([]int{64, 64}, 1, 64, 4, 32)
	u.InChannels, u.OutChannels = 48, 48
	u.DownHasAttn[0], u.DownBlockTypes[0], u.UpBlockTypes[1] = false, "DownBlock2D", "UpBlock2D"
	return ModelConfig{
		Text: clip.TextConfig{HiddenSize: 64, Heads: 4, Layers: 2, Intermediate: 128, HiddenAct: "quick_gelu",
			LayerNormEps: 1e-5, MaxPositions: clip.ContextLength, VocabSize: VocabSize()},
		UNet:       u,
		VAE:        sd.VAEConfig{InChannels: 3, LatentChannels: 48},
		Codec:      4,
		ImageSize:  32,
		Prediction: sched.PredictV,
	}
}

// SmallConfig is DefaultModelConfig with a one-layer, 32-wide text
// encoder and a 32/32 U-Net: the same structure, small enough for tests
// and smoke runs.
func SmallConfig() ModelConfig {
	c := DefaultModelConfig()
	c.Text = clip.TextConfig{HiddenSize: 32, Heads: 2, Layers: 1, Intermediate: 64, HiddenAct: "quick_gelu",
		LayerNormEps: 1e-5, MaxPositions: clip.ContextLength, VocabSize: VocabSize()}
	return c.WithShape([]int{32, 32}, c.VAE.LatentChannels)
}

// VAEConfig64 is the AutoencoderKL the first toy models used (32/32/64/64
// channels, factor 8, 4 latent channels, for 64x64 images); it trains at
// 2-4 steps/s even on an H200, which is why the default is a pixel codec.
func VAEConfig64() sd.VAEConfig {
	return sd.VAEConfig{InChannels: 3, LatentChannels: 4, BlockOutChannels: []int{32, 32, 64, 64}, LayersPerBlock: 1, Groups: 32, Eps: 1e-6}
}

// WithShape returns c with the U-Net's block_out_channels set to ch (one
// resnet per level, attention with 4 heads at every level, GroupNorm over
// 32 groups) and latentChannels latent channels (VAE and U-Net).
func (c ModelConfig) WithShape(ch []int, latentChannels int) ModelConfig {
	attn0 := c.UNet.DownHasAttn[0]
	c.UNet = unetConfig(ch, 1, c.Text.HiddenSize, 4, 32)
	c.UNet.InChannels, c.UNet.OutChannels = latentChannels, latentChannels
	if !attn0 {
		c.UNet.DownHasAttn[0], c.UNet.DownBlockTypes[0], c.UNet.UpBlockTypes[len(ch)-1] = false, "DownBlock2D", "UpBlock2D"
	}
	c.VAE.LatentChannels = latentChannels
	return c
}

// unetConfig completes a UNetConfig for the given widths: attention at
// every level, 4 latent channels, time embedding 4x the first width.
func unetConfig(ch []int, layers, crossDim, heads, groups int) sd.UNetConfig {
	c := sd.UNetConfig{
		InChannels: 4, OutChannels: 4, BlockOutChannels: ch, LayersPerBlock: layers, CrossAttentionDim: crossDim,
		AttentionHeadDim: float64(heads), NormNumGroups: groups, NormEps: 1e-5, FlipSinToCos: true,
		TimeEmbedDim: 4 * ch[0], TransformerDepth: 1,
	}
	for range ch {
		c.Heads = append(c.Heads, heads)
		c.DownHasAttn = append(c.DownHasAttn, true)
		c.DownBlockTypes = append(c.DownBlockTypes, "CrossAttnDownBlock2D")
	}
	for range ch {
		c.UpBlockTypes = append(c.UpBlockTypes, "CrossAttnUpBlock2D")
	}
	return c
}

// LatentSize is the side of the latents (ImageSize over the codec's patch
// or the VAE's factor).
func (c ModelConfig) LatentSize() int {
	if c.Codec > 0 {
		return c.ImageSize / c.Codec
	}
	return c.ImageSize >> (len(c.VAE.BlockOutChannels) - 1)
}

// initValues returns PyTorch's default initialisation for one parameter
// of an SD model, by key and shape: norm weights 1 and biases 0, token
// embeddings N(0, 0.02) and position embeddings N(0, 0.01) (CLIP's init),
// other weights and their biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))
// (nn.Linear and nn.Conv2d's kaiming_uniform(a=sqrt(5))).
func initValues(key string, shape []int, fanIn map[string]int, r *rand.Rand) []float32 {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	base := strings.TrimSuffix(strings.TrimSuffix(key, ".weight"), ".bias")
	isNorm := strings.Contains(base[strings.LastIndex(base, ".")+1:], "norm")
	switch {
	case isNorm && strings.HasSuffix(key, ".weight"):
		for i := range v {
			v[i] = 1
		}
	case isNorm:
		// bias: zeros
	case strings.HasSuffix(key, "token_embedding.weight"), strings.HasSuffix(key, "position_embedding.weight"):
		std := 0.02
		if strings.Contains(key, "position") {
			std = 0.01
		}
		for i := range v {
			v[i] = float32(r.NormFloat64() * std)
		}
	default:
		fi := fanIn[base]
		if fi == 0 {
			fi = 1
		}
		b := 1 / math.Sqrt(float64(fi))
		for i := range v {
			v[i] = float32((2*r.Float64() - 1) * b)
		}
	}
	return v
}

// NewTrainable uploads freshly initialised, trainable weights for every key
// of schema (seeded; the same seed gives the same weights). Every tensor is
// a gpu.Param named by its key.
func NewTrainable(e *gpu.Engine, schema sd.Schema, seed uint64) *nn.Weights {
	fanIn := map[string]int{}
	for k, s := range schema {
		if strings.HasSuffix(k, ".weight") && len(s) >= 2 {
			f := 1
			for _, d := range s[1:] {
				f *= d
			}
			fanIn[strings.TrimSuffix(k, ".weight")] = f
		}
	}
	w := nn.NewWeights(e)
	r := rand.New(rand.NewPCG(seed, 0x746f79776f726c64))
	e.Outside(func() {
		for _, k := range schema.Keys() {
			w.Set(k, e.Param(k, initValues(k, schema[k], fanIn, r), schema[k]...))
		}
	})
	return w
}

// Model is the toy base model on an engine: the three SD 1.x models built
// over trainable weights, and the tokenizer.
type Model struct {
	Cfg       ModelConfig
	Tokenizer *clip.Tokenizer
	Text      *clip.TextModel
	UNet      *sd.UNet
	VAE       *sd.VAE
	Schedule  *sched.Schedule
	// Scaling is the latent scale (vae/config.json scaling_factor).
	Scaling float32
}

// NewModel initialises a model of configuration c with random weights.
func NewModel(e *gpu.Engine, c ModelConfig, seed uint64) (*Model, error) {
	tok, err := NewTokenizer()
	if err != nil {
		return nil, err
	}
	sc := sched.SD15()
	if c.Prediction != "" {
		sc.PredictionType = c.Prediction
	}
	m := &Model{Cfg: c, Tokenizer: tok, Schedule: sched.New(sc), Scaling: sd.ScalingFactor}
	if m.Text, err = clip.NewTextModel(NewTrainable(e, sd.TextSchema(c.Text), seed), c.Text); err != nil {
		return nil, err
	}
	if m.UNet, err = sd.NewUNet(NewTrainable(e, sd.UNetSchema(c.UNet), seed+1), c.UNet); err != nil {
		m.Release()
		return nil, err
	}
	if c.Codec > 0 {
		k := CodecScale(c.ImageSize)
		m.VAE, err = sd.NewPixelCodec(e, c.VAE.InChannels, c.Codec, k)
		m.Scaling = k
	} else {
		m.VAE, err = sd.NewVAE(NewTrainable(e, sd.VAESchema(c.VAE), seed+2))
	}
	if err != nil {
		m.Release()
		return nil, err
	}
	return m, nil
}

// FromPipeline wraps a fully loaded pipeline with float32 weights (e.g. a
// saved toy model; not LoadOptions.F16Weights) as a Model, making every
// weight trainable; c supplies the image size. The Model owns the
// pipeline's weights.
func FromPipeline(p *sd.Pipeline, c ModelConfig) (*Model, error) {
	if p.Tokenizer == nil || p.Text == nil || p.UNet == nil || p.VAE == nil || p.Schedule == nil {
		return nil, fmt.Errorf("toyworld: %s: a toy model needs every component", p.Source.Path)
	}
	for _, w := range []*nn.Weights{p.Text.W.Root(), p.UNet.W, p.VAE.W} {
		for _, k := range w.Keys() {
			if w.Packed(k) {
				return nil, fmt.Errorf("toyworld: %s: weight %s is packed binary16; load with float32 weights to train", p.Source.Path, k)
			}
			t := w.Get(k)
			t.Name = k
			t.SetRequiresGrad(true)
		}
	}
	c.Text, c.UNet = p.Text.Cfg, p.UNet.Cfg
	c.VAE, c.Codec = p.VAE.Cfg, p.VAE.Patch
	if c.Prediction != "" && c.Prediction != p.Schedule.PredictionType {
		// A run switching its target (e.g. epsilon to v) keeps the weights.
		p.Schedule.PredictionType = c.Prediction
	}
	c.Prediction = p.Schedule.PredictionType
	return &Model{Cfg: c, Tokenizer: p.Tokenizer, Text: p.Text, UNet: p.UNet, VAE: p.VAE, Schedule: p.Schedule, Scaling: p.ScalingFactor}, nil
}

// Release frees the model's GPU weights.
func (m *Model) Release() {
	if m.Text != nil {
		m.Text.W.Root().Release()
	}
	if m.UNet != nil {
		m.UNet.W.Release()
	}
	if m.VAE != nil {
		m.VAE.W.Release()
	}
}

// readWeights reads every tensor of w (root view) into safetensors form.
func readWeights(w *nn.Weights) (map[string]safetensors.Tensor, error) {
	out := map[string]safetensors.Tensor{}
	for _, k := range w.Keys() {
		t := w.Get(k)
		v, err := t.Read()
		if err != nil {
			return nil, err
		}
		out[k] = safetensors.F32Tensor(v, t.Shape()...)
	}
	return out, nil
}

// Save writes the model as a diffusers pipeline folder that sd.Load reads:
// model_index.json, text_encoder/, unet/, vae/ (config.json and
// safetensors), tokenizer/ (the toy vocabulary as vocab.json and
// merges.txt) and scheduler/. Files are written atomically one by one.
func (m *Model) Save(dir string) error {
	files := map[string]any{
		"model_index.json": map[string]any{
			"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.24.0",
			"scheduler": []string{"diffusers", "DDIMScheduler"}, "text_encoder": []string{"transformers", "CLIPTextModel"},
			"tokenizer": []string{"transformers", "CLIPTokenizer"}, "unet": []string{"diffusers", "UNet2DConditionModel"},
			"vae": []string{"diffusers", "AutoencoderKL"}, "safety_checker": []any{nil, nil}, "feature_extractor": []any{nil, nil},
			"requires_safety_checker": false,
		},
		"text_encoder/config.json": textConfigJSON(m.Cfg.Text),
		"unet/config.json":         unetConfigJSON(m.Cfg.UNet, m.Cfg.LatentSize()),
		"vae/config.json":          vaeConfigJSON(m.Cfg, m.Scaling),
		"scheduler/scheduler_config.json": map[string]any{
			"_class_name": "DDIMScheduler", "_diffusers_version": "0.24.0", "beta_start": 0.00085, "beta_end": 0.012,
			"beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": m.Schedule.PredictionType, "clip_sample": false,
			"set_alpha_to_one": false, "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": nil,
		},
		"tokenizer/special_tokens_map.json": map[string]any{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
			"pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
		"tokenizer/tokenizer_config.json": map[string]any{"tokenizer_class": "CLIPTokenizer", "model_max_length": clip.ContextLength,
			"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
			"do_lower_case": true},
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := json.MarshalIndent(files[n], "", "  ")
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, n), append(b, '\n')); err != nil {
			return err
		}
	}
	if err := WriteTokenizer(filepath.Join(dir, "tokenizer")); err != nil {
		return err
	}
	for _, p := range []struct {
		file string
		w    *nn.Weights
	}{
		{"text_encoder/model.safetensors", m.Text.W.Root()},
		{"unet/diffusion_pytorch_model.safetensors", m.UNet.W},
		{"vae/diffusion_pytorch_model.safetensors", m.VAE.W},
	} {
		if p.w == m.VAE.W && m.VAE.Patch > 0 {
			continue // a pixel codec has no weights
		}
		ts, err := readWeights(p.w)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, p.file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := safetensors.WriteFile(path, ts, map[string]string{"format": "pt"}); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func textConfigJSON(c clip.TextConfig) map[string]any {
	return map[string]any{
		"architectures": []string{"CLIPTextModel"}, "model_type": "clip_text_model",
		"hidden_size": c.HiddenSize, "num_attention_heads": c.Heads, "num_hidden_layers": c.Layers,
		"intermediate_size": c.Intermediate, "hidden_act": c.HiddenAct, "layer_norm_eps": c.LayerNormEps,
		"max_position_embeddings": c.MaxPositions, "vocab_size": c.VocabSize, "projection_dim": c.HiddenSize,
		"bos_token_id": startID(), "eos_token_id": endID(), "pad_token_id": endID(), "torch_dtype": "float32",
	}
}

func unetConfigJSON(c sd.UNetConfig, sample int) map[string]any {
	return map[string]any{
		"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.24.0", "act_fn": "silu",
		"attention_head_dim": c.Heads, "block_out_channels": c.BlockOutChannels, "center_input_sample": false,
		"cross_attention_dim": c.CrossAttentionDim, "down_block_types": c.DownBlockTypes, "up_block_types": c.UpBlockTypes,
		"downsample_padding": 1, "flip_sin_to_cos": c.FlipSinToCos, "freq_shift": c.FreqShift, "in_channels": c.InChannels,
		"layers_per_block": c.LayersPerBlock, "mid_block_scale_factor": 1, "norm_eps": c.NormEps, "norm_num_groups": c.NormNumGroups,
		"out_channels": c.OutChannels, "sample_size": sample, "use_linear_projection": c.UseLinearProjection,
		"mid_block_type": "UNetMidBlock2DCrossAttn", "addition_embed_type": nil,
	}
}

func vaeConfigJSON(mc ModelConfig, scaling float32) map[string]any {
	c, size := mc.VAE, mc.ImageSize
	if mc.Codec > 0 {
		return map[string]any{
			"_class_name": sd.PixelCodecClass, "patch_size": mc.Codec, "in_channels": c.InChannels,
			"latent_channels": c.InChannels * mc.Codec * mc.Codec, "sample_size": size, "scaling_factor": scaling,
		}
	}
	var down, up []string
	for range c.BlockOutChannels {
		down = append(down, "DownEncoderBlock2D")
		up = append(up, "UpDecoderBlock2D")
	}
	return map[string]any{
		"_class_name": "AutoencoderKL", "_diffusers_version": "0.24.0", "act_fn": "silu",
		"block_out_channels": c.BlockOutChannels, "down_block_types": down, "up_block_types": up,
		"in_channels": c.InChannels, "out_channels": c.InChannels, "latent_channels": c.LatentChannels,
		"layers_per_block": c.LayersPerBlock, "norm_num_groups": c.Groups, "sample_size": size,
		"scaling_factor": scaling,
	}
}
