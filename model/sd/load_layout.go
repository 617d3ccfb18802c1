package sd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sched"
)

// ---- diffusers folder ----

// diffusers loads a diffusers pipeline folder. Every configuration is
// read and checked before any weights are uploaded.
func (l *loader) diffusers(dir string) error {
	p := l.p
	p.Source.Layout = LayoutDiffusers
	var index map[string]any
	if err := readJSON(filepath.Join(dir, "model_index.json"), &index); err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%s: no model_index.json: not a diffusers pipeline folder", dir)
		}
		return err
	}
	idx := filepath.Join(dir, "model_index.json")
	if cls, _ := index["_class_name"].(string); strings.Contains(cls, "XL") {
		return unsupported(idx, "SDXL", "pipeline class "+cls)
	}
	if _, ok := index["text_encoder_2"]; ok {
		return unsupported(idx, "SDXL", "it has text_encoder_2")
	}

	var ucfg UNetConfig
	if l.want(CompUNet) {
		path := filepath.Join(dir, "unet", "config.json")
		var raw struct {
			AdditionEmbedType *string `json:"addition_embed_type"`
			CrossAttentionDim any     `json:"cross_attention_dim"`
		}
		if err := readJSON(path, &raw); err != nil {
			return err
		}
		if raw.AdditionEmbedType != nil && *raw.AdditionEmbedType != "" {
			return unsupported(path, "SDXL", "addition_embed_type "+*raw.AdditionEmbedType)
		}
		switch raw.CrossAttentionDim {
		case 1024.0:
			return unsupported(path, "SD 2.x", "cross_attention_dim 1024")
		case 2048.0:
			return unsupported(path, "SDXL", "cross_attention_dim 2048")
		}
		var err error
		if ucfg, err = ReadUNetConfig(path); err != nil {
			return err
		}
	}
	var tcfg clip.TextConfig
	if l.want(CompText) {
		var err error
		path := filepath.Join(dir, "text_encoder", "config.json")
		if tcfg, err = clip.ReadTextConfig(path); err != nil {
			return err
		}
		if err := sniffText(path, tcfg); err != nil {
			return err
		}
	}
	if l.want(CompVAE) {
		if err := l.readScaling(filepath.Join(dir, "vae", "config.json")); err != nil {
			return err
		}
	}
	scfg, err := sched.LoadConfig(filepath.Join(dir, "scheduler", "scheduler_config.json"))
	if err != nil {
		return err
	}
	p.Schedule = sched.New(scfg)
	if l.want(CompTokenizer) {
		tdir := filepath.Join(dir, "tokenizer")
		if p.Tokenizer, err = clip.LoadHF(tdir); err != nil {
			return err
		}
		p.Source.Tokenizer = tdir
	}

	same := func(k string) string { return k }
	if l.want(CompText) {
		f, err := l.openVariant(filepath.Join(dir, "text_encoder"), "model")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := l.buildText(identitySet(f, nil), tcfg, f.Path, same); err != nil {
			return err
		}
	}
	if l.want(CompUNet) {
		f, err := l.openVariant(filepath.Join(dir, "unet"), "diffusion_pytorch_model")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := l.buildUNet(identitySet(f, nil), ucfg, f.Path, same); err != nil {
			return err
		}
	}
	if l.want(CompVAE) {
		if codec, err := l.pixelCodec(filepath.Join(dir, "vae", "config.json")); err != nil || codec {
			return err
		}
		f, err := l.openVariant(filepath.Join(dir, "vae"), "diffusion_pytorch_model")
		if err != nil {
			return err
		}
		defer f.Close()
		if err := l.buildVAE(identitySet(f, legacyVAEKey), f.Path, same); err != nil {
			return err
		}
	}
	return nil
}

// openVariant opens dir/base.safetensors or dir/base.fp16.safetensors as
// PreferFP16 and availability decide, recording the choice.
func (l *loader) openVariant(dir, base string) (*safetensors.File, error) {
	full := filepath.Join(dir, base+".safetensors")
	half := filepath.Join(dir, base+".fp16.safetensors")
	order := []string{full, half}
	if l.opts.PreferFP16 {
		order = []string{half, full}
	}
	for _, path := range order {
		if _, err := os.Stat(path); err != nil {
			continue
		}
		f, err := safetensors.Open(path)
		if err != nil {
			return nil, err
		}
		l.p.Source.Files = append(l.p.Source.Files, path)
		if path == half {
			l.p.Source.Variant = "fp16"
		}
		return f, nil
	}
	for _, ext := range []string{".bin", ".fp16.bin", ".ckpt"} {
		if _, err := os.Stat(filepath.Join(dir, base+ext)); err == nil {
			return nil, fmt.Errorf("%s: only PyTorch pickle weights (%s); pickles are not loaded, convert them to safetensors", dir, base+ext)
		}
	}
	return nil, fmt.Errorf("%s: missing weights: neither %s nor %s", dir, filepath.Base(full), filepath.Base(half))
}

// legacyVAEKey renames the attention keys of VAEs saved by diffusers
// before 0.14 (query/key/value/proj_attn) to the current names.
func legacyVAEKey(k string) string {
	for _, r := range [][2]string{{".attentions.0.query.", ".attentions.0.to_q."}, {".attentions.0.key.", ".attentions.0.to_k."},
		{".attentions.0.value.", ".attentions.0.to_v."}, {".attentions.0.proj_attn.", ".attentions.0.to_out.0."}} {
		if strings.Contains(k, r[0]) {
			return strings.Replace(k, r[0], r[1], 1)
		}
	}
	return k
}

// ---- single-file checkpoint ----

// singleFile loads an original LDM checkpoint through the three
// conversion tables. Keys outside the three models (EMA copies, schedule
// buffers, position_ids) are ignored; a key inside a model that its table
// does not know is an error.
func (l *loader) singleFile(path string) error {
	p := l.p
	p.Source.Layout = LayoutSingleFile
	switch strings.ToLower(filepath.Ext(path)) {
	case ".ckpt", ".pt", ".pth", ".bin":
		return fmt.Errorf("%s: PyTorch pickle checkpoints are not loaded (they can run code); use the .safetensors version", path)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	p.Source.Files = []string{path}
	if err := sniffSingleFile(f); err != nil {
		return err
	}
	cdir := l.opts.ConfigDir
	p.Source.ConfigDir = cdir
	parts := map[string][]string{}
	for _, n := range f.Names() {
		for _, pre := range []string{ldmUNetPrefix, ldmVAEPrefix, ldmTextPrefix} {
			if strings.HasPrefix(n, pre) {
				parts[pre] = append(parts[pre], strings.TrimPrefix(n, pre))
			}
		}
	}

	// Configurations first, so that a bad one fails before any upload.
	ucfg := defaultUNetConfig()
	tcfg := clip.TextConfig{HiddenAct: "quick_gelu", LayerNormEps: 1e-5}
	scfg := sched.SD15()
	if cdir != "" {
		if l.want(CompUNet) {
			if ucfg, err = ReadUNetConfig(filepath.Join(cdir, "unet", "config.json")); err != nil {
				return err
			}
		}
		if l.want(CompText) {
			if tcfg, err = clip.ReadTextConfig(filepath.Join(cdir, "text_encoder", "config.json")); err != nil {
				return err
			}
		}
		if l.want(CompVAE) {
			if err := l.readScaling(filepath.Join(cdir, "vae", "config.json")); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		sp := filepath.Join(cdir, "scheduler", "scheduler_config.json")
		if _, err := os.Stat(sp); err == nil {
			if scfg, err = sched.LoadConfig(sp); err != nil {
				return err
			}
		}
	}
	p.Schedule = sched.New(scfg)
	if l.want(CompTokenizer) {
		tp, err := findTokenizer(path, l.opts)
		if err != nil {
			return err
		}
		if p.Tokenizer, err = loadTokenizer(tp); err != nil {
			return err
		}
		p.Source.Tokenizer = tp
	}

	if l.want(CompText) {
		ts, tab, err := convertText(f, parts[ldmTextPrefix])
		if err != nil {
			return err
		}
		name := func(k string) string { s, _ := tab.ToLDM(k); return ldmTextPrefix + s }
		if err := l.buildText(ts, tcfg, path, name); err != nil {
			return err
		}
	}
	if l.want(CompUNet) {
		ts, tab, err := convertUNet(f, parts[ldmUNetPrefix], cdir != "", ucfg)
		if err != nil {
			return err
		}
		name := func(k string) string { s, _ := tab.ToLDM(k); return ldmUNetPrefix + s }
		if err := l.buildUNet(ts, ucfg, path, name); err != nil {
			return err
		}
	}
	if l.want(CompVAE) {
		ts, tab, err := convertVAE(f, parts[ldmVAEPrefix])
		if err != nil {
			return err
		}
		name := func(k string) string { s, _ := tab.ToLDM(k); return ldmVAEPrefix + s }
		if err := l.buildVAE(ts, path, name); err != nil {
			return err
		}
	}
	return nil
}

// sniffSingleFile recognises other architectures and non-checkpoints by
// their key names and shapes.
func sniffSingleFile(f *safetensors.File) error {
	var unet []string
	for _, n := range f.Names() {
		switch {
		case strings.HasPrefix(n, "conditioner.embedders."):
			return unsupported(f.Path, "SDXL", "it has conditioner.embedders.*, two text encoders")
		case strings.HasPrefix(n, "cond_stage_model.model."):
			return unsupported(f.Path, "SD 2.x", "its text encoder is OpenCLIP: cond_stage_model.model.*")
		case strings.HasPrefix(n, "lora_unet_") || strings.HasPrefix(n, "lora_te") || strings.Contains(n, ".lora_down.") ||
			strings.Contains(n, ".lora.down.") || strings.Contains(n, ".lora_A."):
			return fmt.Errorf("%s: %w: this is a LoRA file (%q), not a checkpoint: apply it to a base model", f.Path, ErrUnsupported, n)
		case strings.HasPrefix(n, ldmUNetPrefix):
			unet = append(unet, strings.TrimPrefix(n, ldmUNetPrefix))
		}
	}
	if len(unet) == 0 {
		return fmt.Errorf("%s: not a Stable Diffusion checkpoint: no %s* tensors", f.Path, ldmUNetPrefix)
	}
	return sniffUNet(f.Path, unet, func(k string) []int {
		info, _ := f.Info(ldmUNetPrefix + k)
		return info.Shape
	})
}

// prefixSet answers whether any of keys starts with a given dotted prefix.
func prefixSet(keys []string) func(string) bool {
	set := map[string]bool{}
	for _, k := range keys {
		for i := 0; i < len(k); i++ {
			if k[i] == '.' {
				set[k[:i+1]] = true
			}
		}
	}
	return func(p string) bool { return set[p] }
}

// convert maps the keys (relative to prefix) of one model through tab;
// every key must map, and to a distinct diffusers key.
func convert(f *safetensors.File, prefix string, keys []string, tab *KeyTable, what string, norm func(string) (string, bool)) (tensorSet, error) {
	ts := tensorSet{}
	from := map[string]string{}
	for _, k := range keys {
		rel := k
		if norm != nil {
			var ignore bool
			if rel, ignore = norm(k); ignore {
				continue
			}
		}
		diff, squeeze, ok := tab.ToDiffusers(rel)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q is not part of an SD 1.x %s", f.Path, prefix+k, what)
		}
		if prev, dup := from[diff]; dup {
			return nil, fmt.Errorf("%s: tensors %q and %q both convert to %q", f.Path, prefix+prev, prefix+k, diff)
		}
		from[diff] = k
		info, _ := f.Info(prefix + k)
		shape := info.Shape
		if squeeze {
			if len(shape) == 4 && shape[2] == 1 && shape[3] == 1 {
				shape = shape[:2]
			} else if len(shape) != 2 {
				return nil, fmt.Errorf("%s: tensor %q has shape %v, want a 1x1 convolution or a linear weight", f.Path, prefix+k, shape)
			}
		}
		ts[diff] = tensorSrc{f, prefix + k, shape}
	}
	return ts, nil
}

func convertUNet(f *safetensors.File, keys []string, haveCfg bool, cfg UNetConfig) (tensorSet, *KeyTable, error) {
	levels, layers, attn, err := ldmUNetLayout(prefixSet(keys))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", f.Path, ldmUNetPrefix, err)
	}
	if haveCfg && (len(cfg.BlockOutChannels) != levels || cfg.LayersPerBlock != layers) {
		return nil, nil, fmt.Errorf("%s: U-Net has %d levels of %d resnets, the configuration says %d of %d", f.Path, levels, layers, len(cfg.BlockOutChannels), cfg.LayersPerBlock)
	}
	tab := LDMUNetTable(levels, layers, attn)
	ts, err := convert(f, ldmUNetPrefix, keys, tab, "U-Net", nil)
	return ts, tab, err
}

func convertVAE(f *safetensors.File, keys []string) (tensorSet, *KeyTable, error) {
	levels, layers, err := ldmVAELayout(prefixSet(keys))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", f.Path, ldmVAEPrefix, err)
	}
	tab := LDMVAETable(levels, layers)
	ts, err := convert(f, ldmVAEPrefix, keys, tab, "VAE", nil)
	return ts, tab, err
}

func convertText(f *safetensors.File, keys []string) (tensorSet, *KeyTable, error) {
	tab := LDMTextTable()
	ts, err := convert(f, ldmTextPrefix, keys, tab, "CLIP text encoder", ldmTextKey)
	return ts, tab, err
}

// findTokenizer picks the tokenizer for a single-file checkpoint (see
// LoadOptions.TokenizerPath).
func findTokenizer(ckpt string, o LoadOptions) (string, error) {
	if o.TokenizerPath != "" {
		return o.TokenizerPath, nil
	}
	var tried []string
	var cands []string
	if o.ConfigDir != "" {
		cands = append(cands, filepath.Join(o.ConfigDir, "tokenizer"))
	}
	dir := filepath.Dir(ckpt)
	cands = append(cands, filepath.Join(dir, "tokenizer"), filepath.Join(dir, "bpe_simple_vocab_16e6.txt.gz"))
	if env := os.Getenv("INSTRUCTBOOTH_CLIP_BPE"); env != "" {
		cands = append(cands, env)
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
		tried = append(tried, c)
	}
	return "", fmt.Errorf("%s: no CLIP tokenizer found (tried %s): give LoadOptions.TokenizerPath a tokenizer folder (vocab.json, merges.txt) or bpe_simple_vocab_16e6.txt.gz, or set INSTRUCTBOOTH_CLIP_BPE",
		ckpt, strings.Join(tried, ", "))
}
