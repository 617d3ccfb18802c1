// Package sd is Stable Diffusion 1.x on the engine: the UNet2DConditionModel,
// the AutoencoderKL and the checkpoint layouts they load from. Parameters
// are named by their diffusers keys; other layouts are converted at the
// load boundary.
package sd

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/model/nn"
)

// UNetConfig is the part of diffusers' unet/config.json that the SD 1.x
// architecture varies. InferUNetConfig derives it from the weights; the
// JSON only adds what weights cannot tell (the number of heads).
type UNetConfig struct {
	InChannels          int      `json:"in_channels"`
	OutChannels         int      `json:"out_channels"`
	BlockOutChannels    []int    `json:"block_out_channels"`
	LayersPerBlock      int      `json:"layers_per_block"`
	CrossAttentionDim   int      `json:"cross_attention_dim"`
	AttentionHeadDim    any      `json:"attention_head_dim"` // diffusers' name for the head count in SD 1.x
	NormNumGroups       int      `json:"norm_num_groups"`
	NormEps             float32  `json:"norm_eps"`
	UseLinearProjection bool     `json:"use_linear_projection"`
	FlipSinToCos        bool     `json:"flip_sin_to_cos"`
	FreqShift           float32  `json:"freq_shift"`
	DownBlockTypes      []string `json:"down_block_types"`
	UpBlockTypes        []string `json:"up_block_types"`

	// Derived.
	Heads            []int // per level
	TimeEmbedDim     int
	DownHasAttn      []bool
	TransformerDepth int
}

// DefaultSD15UNet returns SD 1.5's settings that weights do not determine.
func defaultUNetConfig() UNetConfig {
	return UNetConfig{NormNumGroups: 32, NormEps: 1e-5, FlipSinToCos: true, FreqShift: 0, AttentionHeadDim: 8.0}
}

// ReadUNetConfig reads a diffusers unet/config.json over the defaults.
func ReadUNetConfig(path string) (UNetConfig, error) {
	c := defaultUNetConfig()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	for _, t := range c.DownBlockTypes {
		if t != "CrossAttnDownBlock2D" && t != "DownBlock2D" {
			return c, fmt.Errorf("%s: down block %q is not an SD 1.x block", path, t)
		}
	}
	return c, nil
}

func count(w *nn.Weights, prefix string) int {
	n := 0
	for w.Has(prefix+strconv.Itoa(n)+".") || hasPrefix(w, prefix+strconv.Itoa(n)+".") {
		n++
	}
	return n
}

func hasPrefix(w *nn.Weights, p string) bool {
	full := w.Key(p)
	for _, k := range w.Keys() {
		if strings.HasPrefix(k, full) {
			return true
		}
	}
	return false
}

// InferUNetConfig completes c from the weights' shapes and checks that the
// weights are a complete SD 1.x-style U-Net.
func InferUNetConfig(w *nn.Weights, c UNetConfig) (UNetConfig, error) {
	ci := w.Shape("conv_in.weight")
	if len(ci) != 4 {
		return c, fmt.Errorf("unet: no conv_in.weight: not a UNet2DConditionModel")
	}
	c.InChannels = ci[1]
	co := w.Shape("conv_out.weight")
	if len(co) != 4 {
		return c, fmt.Errorf("unet: no conv_out.weight")
	}
	c.OutChannels = co[0]
	levels := count(w, "down_blocks.")
	if levels == 0 {
		return c, fmt.Errorf("unet: no down_blocks")
	}
	c.BlockOutChannels = make([]int, levels)
	c.DownHasAttn = make([]bool, levels)
	for i := 0; i < levels; i++ {
		s := w.Shape(fmt.Sprintf("down_blocks.%d.resnets.0.conv1.weight", i))
		if len(s) != 4 {
			return c, fmt.Errorf("unet: down_blocks.%d has no resnets.0.conv1", i)
		}
		c.BlockOutChannels[i] = s[0]
		c.DownHasAttn[i] = hasPrefix(w, fmt.Sprintf("down_blocks.%d.attentions.0.", i))
	}
	c.LayersPerBlock = count(w, "down_blocks.0.resnets.")
	te := w.Shape("time_embedding.linear_1.weight")
	if len(te) != 2 {
		return c, fmt.Errorf("unet: no time_embedding.linear_1.weight")
	}
	c.TimeEmbedDim = te[0]
	if te[1] != c.BlockOutChannels[0] {
		return c, fmt.Errorf("unet: time projection width %d differs from block_out_channels[0] %d", te[1], c.BlockOutChannels[0])
	}
	for i, a := range c.DownHasAttn {
		if a {
			k := w.Shape(fmt.Sprintf("down_blocks.%d.attentions.0.transformer_blocks.0.attn2.to_k.weight", i))
			if len(k) != 2 {
				return c, fmt.Errorf("unet: down_blocks.%d.attentions.0 lacks cross-attention", i)
			}
			c.CrossAttentionDim = k[1]
			c.TransformerDepth = count(w, fmt.Sprintf("down_blocks.%d.attentions.0.transformer_blocks.", i))
			pi := w.Shape(fmt.Sprintf("down_blocks.%d.attentions.0.proj_in.weight", i))
			c.UseLinearProjection = len(pi) == 2
			break
		}
	}
	if hasPrefix(w, "add_embedding.") {
		return c, fmt.Errorf("unet: has add_embedding: looks like SDXL, which is not supported")
	}
	c.Heads = make([]int, levels)
	for i := range c.Heads {
		switch h := c.AttentionHeadDim.(type) {
		case float64:
			c.Heads[i] = int(h)
		case []any:
			if i < len(h) {
				if f, ok := h[i].(float64); ok {
					c.Heads[i] = int(f)
				}
			}
		}
		if c.Heads[i] <= 0 {
			c.Heads[i] = 8
		}
		if c.BlockOutChannels[i]%c.Heads[i] != 0 {
			return c, fmt.Errorf("unet: %d channels at level %d do not split into %d heads", c.BlockOutChannels[i], i, c.Heads[i])
		}
	}
	if c.NormNumGroups == 0 {
		c.NormNumGroups = 32
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-5
	}
	return c, nil
}
