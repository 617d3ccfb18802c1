package sd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// Writing models back out, e.g. a fully fine-tuned U-Net: as a diffusers
// unet folder (SaveUNet) or, with the pipeline's VAE and text encoder, as
// one original-layout single-file checkpoint (SaveSingleFile, the reverse
// of the conversion tables in convert_ldm.go). Packed binary16 weights are
// unpacked; f16 writes every tensor as float16 (half the size, what most
// published checkpoints are), otherwise float32. Files are written
// atomically. The whole model passes through host memory once.

// SaveUNet writes u to dir/config.json and
// dir/diffusion_pytorch_model.safetensors (with metadata meta), which
// LoadUNetFrom with ReadUNetConfig, or a diffusers pipeline folder holding
// dir as its unet/, loads back.
func SaveUNet(dir string, u *UNet, f16 bool, meta map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ts, err := tensorsOf(u.W, f16, func(k string) (string, bool) { return k, false })
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), ts, withFormat(meta)); err != nil {
		return err
	}
	b, err := json.MarshalIndent(unetConfigJSON(u.Cfg), "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(p+".tmp", p)
}

// SaveSingleFile writes the U-Net, VAE and text encoder of p (all three
// must be loaded) as an original (CompVis/LDM) checkpoint:
// model.diffusion_model.*, first_stage_model.* (the VAE attention's
// projections as 1x1 convolutions) and cond_stage_model.transformer.*. Load
// reads it back with LoadOptions.ConfigDir naming a folder with the
// configurations (the file carries none).
func SaveSingleFile(path string, p *Pipeline, f16 bool, meta map[string]string) error {
	if p.UNet == nil || p.VAE == nil || p.Text == nil {
		return fmt.Errorf("%s: a single-file checkpoint needs the U-Net, the VAE and the text encoder", path)
	}
	if p.VAE.Patch > 0 {
		return fmt.Errorf("%s: the model's VAE is a pixel codec, which has no single-file (LDM) form; save a diffusers folder", path)
	}
	uc, vc := p.UNet.Cfg, p.VAE.Cfg
	ut := LDMUNetTable(len(uc.BlockOutChannels), uc.LayersPerBlock, uc.DownHasAttn)
	vt := LDMVAETable(len(vc.BlockOutChannels), vc.LayersPerBlock)
	tt := LDMTextTable()
	all := map[string]safetensors.Tensor{}
	for _, m := range []struct {
		w      *nn.Weights
		tab    *KeyTable
		prefix string
	}{{p.UNet.W, ut, ldmUNetPrefix}, {p.VAE.W, vt, ldmVAEPrefix}, {p.Text.W.Root(), tt, ldmTextPrefix}} {
		ts, err := tensorsOf(m.w, f16, func(k string) (string, bool) {
			l, ok := m.tab.ToLDM(k)
			if !ok {
				return "", false
			}
			_, squeeze, _ := m.tab.ToDiffusers(l) // linear weights stored as 1x1 convs
			return m.prefix + l, squeeze
		})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for k, t := range ts {
			all[k] = t
		}
	}
	return safetensors.WriteFile(path, all, withFormat(meta))
}

func withFormat(meta map[string]string) map[string]string {
	md := map[string]string{"format": "pt"}
	for k, v := range meta {
		md[k] = v
	}
	return md
}

// tensorsOf reads every weight of w under the name that name gives it (an
// empty name is an error: a weight without a place in the layout);
// unsqueeze appends two unit dimensions.
func tensorsOf(w *nn.Weights, f16 bool, name func(key string) (string, bool)) (map[string]safetensors.Tensor, error) {
	out := map[string]safetensors.Tensor{}
	for _, k := range w.Keys() {
		n, unsqueeze := name(k)
		if n == "" {
			return nil, fmt.Errorf("weight %q has no name in the output layout", k)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("two weights map to %q", n)
		}
		s := w.E.Scope()
		v, err := w.Get(k).Read() // a packed weight unpacks into the scope
		s.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", k, err)
		}
		shape := append([]int(nil), w.Shape(k)...)
		if unsqueeze {
			shape = append(shape, 1, 1)
		}
		if f16 {
			out[n] = safetensors.F16Tensor(v, shape...)
		} else {
			out[n] = safetensors.F32Tensor(v, shape...)
		}
	}
	return out, nil
}

// unetConfigJSON is diffusers' unet/config.json for c.
func unetConfigJSON(c UNetConfig) map[string]any {
	var down, up []string
	for _, a := range c.DownHasAttn {
		if a {
			down = append(down, "CrossAttnDownBlock2D")
		} else {
			down = append(down, "DownBlock2D")
		}
	}
	for i := len(c.DownHasAttn) - 1; i >= 0; i-- {
		if c.DownHasAttn[i] {
			up = append(up, "CrossAttnUpBlock2D")
		} else {
			up = append(up, "UpBlock2D")
		}
	}
	var heads any = c.Heads
	same := true
	for _, h := range c.Heads {
		same = same && h == c.Heads[0]
	}
	if same && len(c.Heads) > 0 {
		heads = c.Heads[0]
	}
	return map[string]any{
		"_class_name":                  "UNet2DConditionModel",
		"_diffusers_version":           "0.24.0",
		"act_fn":                       "silu",
		"attention_head_dim":           heads,
		"block_out_channels":           c.BlockOutChannels,
		"center_input_sample":          false,
		"cross_attention_dim":          c.CrossAttentionDim,
		"down_block_types":             down,
		"up_block_types":               up,
		"downsample_padding":           1,
		"flip_sin_to_cos":              c.FlipSinToCos,
		"freq_shift":                   c.FreqShift,
		"in_channels":                  c.InChannels,
		"out_channels":                 c.OutChannels,
		"layers_per_block":             c.LayersPerBlock,
		"mid_block_scale_factor":       1,
		"norm_eps":                     c.NormEps,
		"norm_num_groups":              c.NormNumGroups,
		"sample_size":                  64,
		"transformer_layers_per_block": c.TransformerDepth,
		"use_linear_projection":        c.UseLinearProjection,
	}
}
