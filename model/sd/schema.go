package sd

import (
	"fmt"
	"sort"

	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/nn"
)

// Schema lists every parameter of a model by its diffusers (or
// transformers) key with its shape. It is derived from the configuration
// alone, so it validates a loaded checkpoint (missing, extra or misshapen
// tensors are load errors, never a panic in the middle of a forward pass)
// and describes the weights to generate for a random model.
type Schema map[string][]int

// Keys returns the keys sorted.
func (s Schema) Keys() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (s Schema) add(key string, shape ...int) { s[key] = shape }

// linear adds an nn.Linear's weight [out, in] and, if bias, its bias [out].
func (s Schema) linear(p string, out, in int, bias bool) {
	s.add(p+".weight", out, in)
	if bias {
		s.add(p+".bias", out)
	}
}

func (s Schema) conv(p string, out, in, k int) {
	s.add(p+".weight", out, in, k, k)
	s.add(p+".bias", out)
}

func (s Schema) norm(p string, c int) {
	s.add(p+".weight", c)
	s.add(p+".bias", c)
}

// UNetSchema is the parameter set of the UNet2DConditionModel that c
// describes (as completed by InferUNetConfig).
func UNetSchema(c UNetConfig) Schema {
	s := Schema{}
	ch := c.BlockOutChannels
	levels, t := len(ch), c.TimeEmbedDim
	resnet := func(p string, in, out int) {
		s.norm(p+".norm1", in)
		s.conv(p+".conv1", out, in, 3)
		s.linear(p+".time_emb_proj", out, t, true)
		s.norm(p+".norm2", out)
		s.conv(p+".conv2", out, out, 3)
		if in != out {
			s.conv(p+".conv_shortcut", out, in, 1)
		}
	}
	transformer := func(p string, ch int) {
		s.norm(p+".norm", ch)
		proj := func(name string) {
			if c.UseLinearProjection {
				s.linear(p+"."+name, ch, ch, true)
			} else {
				s.conv(p+"."+name, ch, ch, 1)
			}
		}
		proj("proj_in")
		for b := 0; b < c.TransformerDepth; b++ {
			bp := fmt.Sprintf("%s.transformer_blocks.%d", p, b)
			for _, n := range []string{"norm1", "norm2", "norm3"} {
				s.norm(bp+"."+n, ch)
			}
			for a, kv := range map[string]int{"attn1": ch, "attn2": c.CrossAttentionDim} {
				s.linear(bp+"."+a+".to_q", ch, ch, false)
				s.linear(bp+"."+a+".to_k", ch, kv, false)
				s.linear(bp+"."+a+".to_v", ch, kv, false)
				s.linear(bp+"."+a+".to_out.0", ch, ch, true)
			}
			s.linear(bp+".ff.net.0.proj", 8*ch, ch, true) // GEGLU: value and gate halves
			s.linear(bp+".ff.net.2", ch, 4*ch, true)
		}
		proj("proj_out")
	}

	s.conv("conv_in", ch[0], c.InChannels, 3)
	s.linear("time_embedding.linear_1", t, ch[0], true)
	s.linear("time_embedding.linear_2", t, t, true)
	prev := ch[0]
	for i := 0; i < levels; i++ {
		for j := 0; j < c.LayersPerBlock; j++ {
			in := ch[i]
			if j == 0 {
				in = prev
			}
			resnet(fmt.Sprintf("down_blocks.%d.resnets.%d", i, j), in, ch[i])
			if c.DownHasAttn[i] {
				transformer(fmt.Sprintf("down_blocks.%d.attentions.%d", i, j), ch[i])
			}
		}
		if i < levels-1 {
			s.conv(fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", i), ch[i], ch[i], 3)
		}
		prev = ch[i]
	}
	last := ch[levels-1]
	resnet("mid_block.resnets.0", last, last)
	transformer("mid_block.attentions.0", last)
	resnet("mid_block.resnets.1", last, last)
	// Up block i works at level L-1-i; its resnets take the previous
	// output concatenated with the matching skip (the last one from the
	// level below).
	prev = last
	for i := 0; i < levels; i++ {
		level := levels - 1 - i
		out := ch[level]
		below := ch[max(level-1, 0)]
		for j := 0; j <= c.LayersPerBlock; j++ {
			skip := out
			if j == c.LayersPerBlock {
				skip = below
			}
			in := out
			if j == 0 {
				in = prev
			}
			resnet(fmt.Sprintf("up_blocks.%d.resnets.%d", i, j), in+skip, out)
			if c.DownHasAttn[level] {
				transformer(fmt.Sprintf("up_blocks.%d.attentions.%d", i, j), out)
			}
		}
		if i < levels-1 {
			s.conv(fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", i), out, out, 3)
		}
		prev = out
	}
	s.norm("conv_norm_out", ch[0])
	s.conv("conv_out", c.OutChannels, ch[0], 3)
	return s
}

// VAESchema is the parameter set of the AutoencoderKL that c describes
// (output channels = input channels).
func VAESchema(c VAEConfig) Schema {
	s := Schema{}
	ch := c.BlockOutChannels
	levels, lat := len(ch), c.LatentChannels
	last := ch[levels-1]
	resnet := func(p string, in, out int) {
		s.norm(p+".norm1", in)
		s.conv(p+".conv1", out, in, 3)
		s.norm(p+".norm2", out)
		s.conv(p+".conv2", out, out, 3)
		if in != out {
			s.conv(p+".conv_shortcut", out, in, 1)
		}
	}
	mid := func(p string) {
		resnet(p+".resnets.0", last, last)
		s.norm(p+".attentions.0.group_norm", last)
		for _, n := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			s.linear(p+".attentions.0."+n, last, last, true)
		}
		resnet(p+".resnets.1", last, last)
	}

	s.conv("encoder.conv_in", ch[0], c.InChannels, 3)
	prev := ch[0]
	for i := 0; i < levels; i++ {
		for j := 0; j < c.LayersPerBlock; j++ {
			in := ch[i]
			if j == 0 {
				in = prev
			}
			resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j), in, ch[i])
		}
		if i < levels-1 {
			s.conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), ch[i], ch[i], 3)
		}
		prev = ch[i]
	}
	mid("encoder.mid_block")
	s.norm("encoder.conv_norm_out", last)
	s.conv("encoder.conv_out", 2*lat, last, 3)
	s.conv("quant_conv", 2*lat, 2*lat, 1)
	s.conv("post_quant_conv", lat, lat, 1)

	s.conv("decoder.conv_in", last, lat, 3)
	mid("decoder.mid_block")
	prev = last
	for i := 0; i < levels; i++ {
		out := ch[levels-1-i]
		for j := 0; j <= c.LayersPerBlock; j++ {
			in := out
			if j == 0 {
				in = prev
			}
			resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j), in, out)
		}
		if i < levels-1 {
			s.conv(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), out, out, 3)
		}
		prev = out
	}
	s.norm("decoder.conv_norm_out", ch[0])
	s.conv("decoder.conv_out", c.InChannels, ch[0], 3)
	return s
}

// TextSchema is the parameter set of transformers' CLIPTextModel that c
// describes, under "text_model.".
func TextSchema(c clip.TextConfig) Schema {
	s := Schema{}
	d := c.HiddenSize
	s.add("text_model.embeddings.token_embedding.weight", c.VocabSize, d)
	s.add("text_model.embeddings.position_embedding.weight", c.MaxPositions, d)
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("text_model.encoder.layers.%d", i)
		s.norm(p+".layer_norm1", d)
		s.norm(p+".layer_norm2", d)
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			s.linear(p+".self_attn."+n, d, d, true)
		}
		s.linear(p+".mlp.fc1", c.Intermediate, d, true)
		s.linear(p+".mlp.fc2", d, c.Intermediate, true)
	}
	s.norm("text_model.final_layer_norm", d)
	return s
}

// check compares the weights under w with the schema: every key present
// with its shape and no key beyond it. name(key) spells a key as the
// checkpoint file does, for the error message.
func (s Schema) check(w *nn.Weights, name func(string) string) error {
	for _, k := range s.Keys() {
		got := w.Shape(k)
		if got == nil {
			return fmt.Errorf("missing tensor %q", name(k))
		}
		if !equalShape(got, s[k]) {
			return fmt.Errorf("tensor %q has shape %v, want %v", name(k), got, s[k])
		}
	}
	for _, k := range w.Keys() {
		if _, ok := s[k]; !ok {
			return fmt.Errorf("unexpected tensor %q: not part of an SD 1.x model", name(k))
		}
	}
	return nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
