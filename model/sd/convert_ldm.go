package sd

import (
	"fmt"
	"strings"
)

// The original (CompVis/LDM) single-file checkpoint names its modules
// differently from diffusers. Each model gets one conversion table, built
// from its configuration (number of levels, layers per block, which levels
// have attention). A table is a list of module pairs (LDM prefix, diffusers
// prefix) and, per pair, a kind that renames the parameter path inside the
// module. It converts in both directions, so an error can name the key as
// the file spells it.

// Prefixes of the three models inside a single-file checkpoint.
const (
	ldmUNetPrefix = "model.diffusion_model."
	ldmVAEPrefix  = "first_stage_model."
	ldmTextPrefix = "cond_stage_model.transformer."
)

// moduleKind says how parameter paths inside a module are renamed.
type moduleKind int

const (
	kindSame       moduleKind = iota // identical paths (conv, linear, norm, transformer)
	kindUNetResnet                   // ResBlock (in_layers/emb_layers/out_layers) -> ResnetBlock2D
	kindVAEResnet                    // ResnetBlock: nin_shortcut -> conv_shortcut
	kindVAEAttn                      // AttnBlock: norm/q/k/v/proj_out -> group_norm/to_q/to_k/to_v/to_out.0
)

// renames lists (LDM path, diffusers path) per kind.
var renames = map[moduleKind][][2]string{
	kindUNetResnet: {
		{"in_layers.0", "norm1"}, {"in_layers.2", "conv1"}, {"emb_layers.1", "time_emb_proj"},
		{"out_layers.0", "norm2"}, {"out_layers.3", "conv2"}, {"skip_connection", "conv_shortcut"},
	},
	kindVAEResnet: {
		{"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"nin_shortcut", "conv_shortcut"},
	},
	kindVAEAttn: {
		{"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"},
	},
}

type modulePair struct {
	ldm, diff string // module prefixes without the trailing dot
	kind      moduleKind
}

// KeyTable converts the keys of one model between the LDM layout and
// diffusers. Keys are relative to the model (no "model.diffusion_model."
// etc.).
type KeyTable struct {
	byLDM, byDiff map[string]modulePair
}

func newKeyTable(pairs []modulePair) *KeyTable {
	t := &KeyTable{byLDM: map[string]modulePair{}, byDiff: map[string]modulePair{}}
	for _, p := range pairs {
		if _, dup := t.byLDM[p.ldm]; dup {
			panic("sd: duplicate LDM module " + p.ldm)
		}
		if _, dup := t.byDiff[p.diff]; dup {
			panic("sd: duplicate diffusers module " + p.diff)
		}
		t.byLDM[p.ldm] = p
		t.byDiff[p.diff] = p
	}
	return t
}

// lookup finds the longest module prefix of key in m and returns the pair
// and the path inside the module.
func lookup(m map[string]modulePair, key string) (modulePair, string, bool) {
	for i := len(key) - 1; i > 0; i-- {
		if key[i] != '.' {
			continue
		}
		if p, ok := m[key[:i]]; ok {
			return p, key[i+1:], true
		}
	}
	return modulePair{}, "", false
}

// rename maps a path inside a module of kind k; toDiff picks the direction.
func rename(k moduleKind, path string, toDiff bool) (string, bool) {
	rs, ok := renames[k]
	if !ok {
		return path, true
	}
	for _, r := range rs {
		from, to := r[0], r[1]
		if !toDiff {
			from, to = to, from
		}
		if strings.HasPrefix(path, from+".") {
			return to + path[len(from):], true
		}
	}
	return "", false
}

// ToDiffusers converts an LDM key; ok is false for keys the table does not
// know (not part of the model). squeeze is true for the VAE attention's
// 1x1-conv weights [C, C, 1, 1], which diffusers stores as Linear [C, C].
func (t *KeyTable) ToDiffusers(key string) (diff string, squeeze, ok bool) {
	p, path, ok := lookup(t.byLDM, key)
	if !ok {
		return "", false, false
	}
	path, ok = rename(p.kind, path, true)
	if !ok {
		return "", false, false
	}
	squeeze = p.kind == kindVAEAttn && strings.HasPrefix(path, "to_") && strings.HasSuffix(path, ".weight")
	return p.diff + "." + path, squeeze, true
}

// ToLDM converts a diffusers key back to the LDM name.
func (t *KeyTable) ToLDM(key string) (string, bool) {
	p, path, ok := lookup(t.byDiff, key)
	if !ok {
		return "", false
	}
	path, ok = rename(p.kind, path, false)
	if !ok {
		return "", false
	}
	return p.ldm + "." + path, true
}

// LDMUNetTable is the table of an LDM UNetModel with the given number of
// levels, resnets per down level and attention per level:
//
//	time_embed.0/2                  -> time_embedding.linear_1/2
//	input_blocks.0.0                -> conv_in
//	input_blocks.k.0 / .1           -> down_blocks.i.resnets.j / attentions.j  (k = 1 + i(L+1) + j)
//	input_blocks.(i+1)(L+1).0.op    -> down_blocks.i.downsamplers.0.conv
//	middle_block.0/1/2              -> mid_block.resnets.0/attentions.0/resnets.1
//	output_blocks.i(L+1)+j.0 / .1   -> up_blocks.i.resnets.j / attentions.j
//	output_blocks.i(L+1)+L.1|2.conv -> up_blocks.i.upsamplers.0.conv (2 after an attention)
//	out.0 / out.2                   -> conv_norm_out / conv_out
func LDMUNetTable(levels, layers int, attn []bool) *KeyTable {
	ps := []modulePair{
		{"time_embed.0", "time_embedding.linear_1", kindSame},
		{"time_embed.2", "time_embedding.linear_2", kindSame},
		{"input_blocks.0.0", "conv_in", kindSame},
		{"out.0", "conv_norm_out", kindSame},
		{"out.2", "conv_out", kindSame},
		{"middle_block.0", "mid_block.resnets.0", kindUNetResnet},
		{"middle_block.1", "mid_block.attentions.0", kindSame},
		{"middle_block.2", "mid_block.resnets.1", kindUNetResnet},
	}
	for i := 0; i < levels; i++ {
		for j := 0; j < layers; j++ {
			k := 1 + i*(layers+1) + j
			ps = append(ps, modulePair{fmt.Sprintf("input_blocks.%d.0", k), fmt.Sprintf("down_blocks.%d.resnets.%d", i, j), kindUNetResnet})
			if attn[i] {
				ps = append(ps, modulePair{fmt.Sprintf("input_blocks.%d.1", k), fmt.Sprintf("down_blocks.%d.attentions.%d", i, j), kindSame})
			}
		}
		if i < levels-1 {
			ps = append(ps, modulePair{fmt.Sprintf("input_blocks.%d.0.op", (i+1)*(layers+1)), fmt.Sprintf("down_blocks.%d.downsamplers.0.conv", i), kindSame})
		}
	}
	for i := 0; i < levels; i++ {
		level := levels - 1 - i
		for j := 0; j <= layers; j++ {
			k := i*(layers+1) + j
			ps = append(ps, modulePair{fmt.Sprintf("output_blocks.%d.0", k), fmt.Sprintf("up_blocks.%d.resnets.%d", i, j), kindUNetResnet})
			if attn[level] {
				ps = append(ps, modulePair{fmt.Sprintf("output_blocks.%d.1", k), fmt.Sprintf("up_blocks.%d.attentions.%d", i, j), kindSame})
			}
		}
		if i < levels-1 {
			sub := 1
			if attn[level] {
				sub = 2
			}
			ps = append(ps, modulePair{fmt.Sprintf("output_blocks.%d.%d.conv", i*(layers+1)+layers, sub), fmt.Sprintf("up_blocks.%d.upsamplers.0.conv", i), kindSame})
		}
	}
	return newKeyTable(ps)
}

// LDMVAETable is the table of an LDM AutoencoderKL with the given number of
// levels and resnets per encoder level. The decoder's up.i runs last-first:
// it is diffusers' up_blocks.(levels-1-i).
func LDMVAETable(levels, layers int) *KeyTable {
	ps := []modulePair{
		{"quant_conv", "quant_conv", kindSame},
		{"post_quant_conv", "post_quant_conv", kindSame},
	}
	for _, part := range []string{"encoder", "decoder"} {
		ps = append(ps,
			modulePair{part + ".conv_in", part + ".conv_in", kindSame},
			modulePair{part + ".norm_out", part + ".conv_norm_out", kindSame},
			modulePair{part + ".conv_out", part + ".conv_out", kindSame},
			modulePair{part + ".mid.block_1", part + ".mid_block.resnets.0", kindVAEResnet},
			modulePair{part + ".mid.attn_1", part + ".mid_block.attentions.0", kindVAEAttn},
			modulePair{part + ".mid.block_2", part + ".mid_block.resnets.1", kindVAEResnet},
		)
	}
	for i := 0; i < levels; i++ {
		for j := 0; j < layers; j++ {
			ps = append(ps, modulePair{fmt.Sprintf("encoder.down.%d.block.%d", i, j), fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j), kindVAEResnet})
		}
		if i < levels-1 {
			ps = append(ps, modulePair{fmt.Sprintf("encoder.down.%d.downsample.conv", i), fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), kindSame})
		}
		up := levels - 1 - i
		for j := 0; j <= layers; j++ {
			ps = append(ps, modulePair{fmt.Sprintf("decoder.up.%d.block.%d", i, j), fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", up, j), kindVAEResnet})
		}
		if i > 0 {
			ps = append(ps, modulePair{fmt.Sprintf("decoder.up.%d.upsample.conv", i), fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", up), kindSame})
		}
	}
	return newKeyTable(ps)
}

// LDMTextTable is the text encoder's table: the LDM FrozenCLIPEmbedder
// wraps transformers' CLIPTextModel, so "text_model.*" keeps its name
// (older files drop the "text_model." level, which is added back).
// position_ids buffers are not parameters and are not converted.
func LDMTextTable() *KeyTable {
	return newKeyTable([]modulePair{
		{"text_model.embeddings", "text_model.embeddings", kindSame},
		{"text_model.encoder", "text_model.encoder", kindSame},
		{"text_model.final_layer_norm", "text_model.final_layer_norm", kindSame},
	})
}

// ldmTextKey normalises a text-encoder key of a single file (relative to
// cond_stage_model.transformer.); ignore is true for buffers.
func ldmTextKey(k string) (key string, ignore bool) {
	if strings.HasSuffix(k, "position_ids") {
		return "", true
	}
	if !strings.HasPrefix(k, "text_model.") {
		k = "text_model." + k
	}
	return k, false
}

// ldmUNetLayout reads the number of levels, resnets per level and which
// levels have attention from the names of an LDM U-Net's keys (relative to
// model.diffusion_model.).
func ldmUNetLayout(has func(prefix string) bool) (levels, layers int, attn []bool, err error) {
	in := 0
	for has(fmt.Sprintf("input_blocks.%d.", in)) {
		in++
	}
	out := 0
	for has(fmt.Sprintf("output_blocks.%d.", out)) {
		out++
	}
	if in < 2 || out < 2 {
		return 0, 0, nil, fmt.Errorf("U-Net has %d input and %d output blocks", in, out)
	}
	// The first downsampler sits right after the first level's resnets.
	layers = in - 1
	for k := 1; k < in; k++ {
		if has(fmt.Sprintf("input_blocks.%d.0.op.", k)) {
			layers = k - 1
			break
		}
	}
	if layers < 1 || out%(layers+1) != 0 {
		return 0, 0, nil, fmt.Errorf("U-Net blocks (%d in, %d out) do not form levels of %d resnets", in, out, layers)
	}
	levels = out / (layers + 1)
	if in != levels*(layers+1) {
		return 0, 0, nil, fmt.Errorf("U-Net has %d input blocks, want %d for %d levels of %d resnets", in, levels*(layers+1), levels, layers)
	}
	attn = make([]bool, levels)
	for i := range attn {
		attn[i] = has(fmt.Sprintf("input_blocks.%d.1.", 1+i*(layers+1)))
	}
	return levels, layers, attn, nil
}

// ldmVAELayout reads the number of levels and resnets per encoder level.
func ldmVAELayout(has func(prefix string) bool) (levels, layers int, err error) {
	for has(fmt.Sprintf("encoder.down.%d.", levels)) {
		levels++
	}
	for has(fmt.Sprintf("encoder.down.0.block.%d.", layers)) {
		layers++
	}
	if levels == 0 || layers == 0 {
		return 0, 0, fmt.Errorf("VAE has no encoder.down.0.block.0")
	}
	return levels, layers, nil
}
