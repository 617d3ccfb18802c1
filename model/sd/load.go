package sd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/x448/float16"
)

// Pipeline is a loaded Stable Diffusion 1.x model: tokenizer, text
// encoder, U-Net, VAE and noise schedule, with every parameter named by
// its diffusers key whatever layout it came from. Components left out by
// LoadOptions.Components are nil.
type Pipeline struct {
	Tokenizer *clip.Tokenizer
	Text      *clip.TextModel
	UNet      *UNet
	VAE       *VAE
	Schedule  *sched.Schedule
	// ScalingFactor is the VAE's latent scale (vae/config.json
	// scaling_factor; 0.18215 for SD 1.x).
	ScalingFactor float32
	Source        Source
}

// Layout names a checkpoint layout.
type Layout string

const (
	// LayoutDiffusers is a diffusers pipeline folder (model_index.json and
	// one folder per component).
	LayoutDiffusers Layout = "diffusers"
	// LayoutSingleFile is an original (CompVis/LDM) single-file checkpoint.
	LayoutSingleFile Layout = "single-file"
)

// Source records where a Pipeline came from.
type Source struct {
	Path    string
	Layout  Layout
	Variant string   // "fp16" when diffusers' .fp16.safetensors files were read
	Files   []string // weight files read
	// ConfigDir and Tokenizer are the configuration folder and tokenizer
	// actually used ("" when none).
	ConfigDir, Tokenizer string
}

// Component selects parts of a pipeline to load.
type Component uint

const (
	CompTokenizer Component = 1 << iota
	CompText
	CompUNet
	CompVAE
	// CompAll is every component (the zero Components means this too).
	CompAll = CompTokenizer | CompText | CompUNet | CompVAE
)

// LoadOptions tune Load.
type LoadOptions struct {
	// PreferFP16 reads diffusers' *.fp16.safetensors variants where a
	// component has one. (A component with only the fp16 file uses it
	// regardless.)
	PreferFP16 bool
	// F16Weights rounds every weight to binary16 (nearest even) and keeps
	// the matrices and kernels (rank >= 2) packed on the GPU: half the
	// memory, unpacked per use (see nn.Weights). Biases and norm
	// parameters are stored as f32 holding their binary16 values, so the
	// model computes exactly what the fp16 checkpoint does.
	F16Weights bool
	// ConfigDir is a diffusers-style folder whose unet/config.json,
	// text_encoder/config.json, vae/config.json, scheduler/
	// scheduler_config.json and tokenizer/ complete a single-file
	// checkpoint, which carries no configuration: without it the head
	// counts are SD 1.x's (8 per U-Net level; text width/64, i.e. 12 for
	// CLIP-L) and the scheduler is SD 1.5's. A diffusers folder uses its
	// own files and ignores ConfigDir.
	ConfigDir string
	// TokenizerPath is a tokenizer folder (vocab.json + merges.txt) or
	// openai's bpe_simple_vocab_16e6.txt.gz, for single-file checkpoints.
	// Empty: ConfigDir/tokenizer, then tokenizer/ or
	// bpe_simple_vocab_16e6.txt.gz beside the checkpoint, then
	// $INSTRUCTBOOTH_CLIP_BPE.
	TokenizerPath string
	// Components to load; zero loads all.
	Components Component
}

// ErrUnsupported is wrapped by the error for a checkpoint of another
// architecture (SDXL, SD 2.x, a LoRA file, ...).
var ErrUnsupported = errors.New("not supported")

func unsupported(path, arch, why string) error {
	return fmt.Errorf("%s: %w: looks like %s (%s); only Stable Diffusion 1.x checkpoints load", path, ErrUnsupported, arch, why)
}

// Load reads a Stable Diffusion 1.x checkpoint onto e: a diffusers folder
// (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)
// or a single-file original checkpoint (.safetensors with
// model.diffusion_model.*, first_stage_model.*, cond_stage_model.
// transformer.*). Configurations come from config.json where present and
// from the tensor shapes otherwise; every tensor is checked against the
// configuration's schema. Errors name the file and the tensor; a
// checkpoint of another architecture gets an error wrapping
// ErrUnsupported that says which one it looks like.
func Load(e *gpu.Engine, path string, opts LoadOptions) (*Pipeline, error) {
	if opts.Components == 0 {
		opts.Components = CompAll
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	l := &loader{e: e, opts: opts, p: &Pipeline{ScalingFactor: ScalingFactor, Source: Source{Path: path}}}
	if st.IsDir() {
		err = l.diffusers(path)
	} else {
		err = l.singleFile(path)
	}
	if err != nil {
		l.p.Release()
		return nil, err
	}
	return l.p, nil
}

// Release frees the GPU weights of every loaded model.
func (p *Pipeline) Release() {
	if p.Text != nil {
		p.Text.W.Release()
	}
	if p.UNet != nil {
		p.UNet.W.Release()
	}
	if p.VAE != nil {
		p.VAE.W.Release()
	}
}

type loader struct {
	e    *gpu.Engine
	opts LoadOptions
	p    *Pipeline
}

func (l *loader) want(c Component) bool { return l.opts.Components&c != 0 }

// tensorSrc is one tensor to upload: where it is and the shape to store.
type tensorSrc struct {
	f     *safetensors.File
	name  string
	shape []int
}

// tensorSet maps model keys (diffusers names) to their sources.
type tensorSet map[string]tensorSrc

// identitySet takes every tensor of f under its own name, less ignored
// buffers and with the legacy names rename maps.
func identitySet(f *safetensors.File, rename func(string) string) tensorSet {
	ts := tensorSet{}
	for _, n := range f.Names() {
		if strings.HasSuffix(n, "position_ids") {
			continue
		}
		info, _ := f.Info(n)
		key := n
		if rename != nil {
			key = rename(n)
		}
		ts[key] = tensorSrc{f, n, info.Shape}
	}
	return ts
}

func (ts tensorSet) keys() []string {
	out := make([]string, 0, len(ts))
	for k := range ts {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (ts tensorSet) shape(k string) []int {
	if s, ok := ts[k]; ok {
		return s.shape
	}
	return nil
}

// upload copies the tensors to the GPU as frozen weights (outside any
// scope), packing rank >= 2 tensors as binary16 when f16 is set.
func upload(e *gpu.Engine, ts tensorSet, f16 bool) (*nn.Weights, error) {
	w := nn.NewWeights(e)
	var err error
	e.Outside(func() {
		for _, k := range ts.keys() {
			if err = uploadOne(e, w, k, ts[k], f16); err != nil {
				return
			}
		}
	})
	if err != nil {
		w.Release()
		return nil, err
	}
	return w, nil
}

func uploadOne(e *gpu.Engine, w *nn.Weights, key string, s tensorSrc, f16 bool) error {
	info, _ := s.f.Info(s.name)
	switch info.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
	default:
		return fmt.Errorf("%s: tensor %q has dtype %s, want a float type", s.f.Path, s.name, info.DType)
	}
	if f16 && len(s.shape) >= 2 {
		// f16 data goes up as it is; other float types are rounded first.
		var h *gpu.F16
		var uerr error
		if info.DType == safetensors.F16 {
			raw, _, err := s.f.Raw(s.name)
			if err != nil {
				return err
			}
			h, uerr = e.UploadF16Raw(raw, s.shape...)
		} else {
			v, _, err := s.f.Float32(s.name)
			if err != nil {
				return err
			}
			h, uerr = e.F16FromFloat32(v, s.shape...)
		}
		if err := uerr; err != nil {
			return fmt.Errorf("%s: uploading %q: %w", s.f.Path, s.name, err)
		}
		w.SetF16(key, h)
		return nil
	}
	v, _, err := s.f.Float32(s.name)
	if err != nil {
		return err
	}
	if f16 && info.DType != safetensors.F16 {
		// Small tensors stay f32 (every op reads them directly) but take
		// their binary16 values, so the model is the fp16 checkpoint's.
		for i, x := range v {
			v[i] = float16.Fromfloat32(x).Float32()
		}
	}
	t, err := e.Upload(gpu.Weights, v, s.shape...)
	if err != nil {
		return fmt.Errorf("%s: uploading %q: %w", s.f.Path, s.name, err)
	}
	w.Set(key, t)
	return nil
}

// sniffUNet recognises other architectures from U-Net tensors (the
// transformer-internal names are the same in both layouts).
func sniffUNet(path string, keys []string, shape func(string) []int) error {
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, "add_embedding.") || strings.HasPrefix(k, "label_emb."):
			return unsupported(path, "SDXL", "the U-Net has "+strings.SplitN(k, ".", 2)[0]+".*, size and pooled-text conditioning")
		case strings.HasSuffix(k, "attn2.to_k.weight"):
			if s := shape(k); len(s) == 2 && s[1] == 2048 {
				return unsupported(path, "SDXL", "cross-attention dim 2048")
			} else if len(s) == 2 && s[1] == 1024 {
				return unsupported(path, "SD 2.x", "cross-attention dim 1024")
			}
		case strings.HasSuffix(k, ".proj_in.weight") && len(shape(k)) == 2:
			return unsupported(path, "SD 2.x", "linear proj_in/proj_out in the U-Net's transformers")
		}
	}
	return nil
}

func sniffText(path string, c clip.TextConfig) error {
	switch c.HiddenSize {
	case 1024:
		return unsupported(path, "SD 2.x", "text encoder width 1024, OpenCLIP ViT-H")
	case 1280:
		return unsupported(path, "SDXL", "text encoder width 1280, OpenCLIP ViT-bigG")
	}
	return nil
}

// buildUNet uploads ts, infers the configuration over cfg and checks the
// weights against its schema; name spells a key as the file does.
func (l *loader) buildUNet(ts tensorSet, cfg UNetConfig, file string, name func(string) string) error {
	if err := sniffUNet(file, ts.keys(), ts.shape); err != nil {
		return err
	}
	w, err := upload(l.e, ts, l.opts.F16Weights)
	if err != nil {
		return err
	}
	u, err := NewUNet(w, cfg)
	if err == nil {
		err = UNetSchema(u.Cfg).check(w, name)
	}
	if err != nil {
		w.Release()
		return fmt.Errorf("%s: %w", file, err)
	}
	l.p.UNet = u
	return nil
}

func (l *loader) buildVAE(ts tensorSet, file string, name func(string) string) error {
	w, err := upload(l.e, ts, l.opts.F16Weights)
	if err != nil {
		return err
	}
	v, err := NewVAE(w)
	if err == nil {
		err = VAESchema(v.Cfg).check(w, name)
	}
	if err != nil {
		w.Release()
		return fmt.Errorf("%s: %w", file, err)
	}
	v.Scale = l.p.ScalingFactor
	l.p.VAE = v
	return nil
}

// pixelCodec builds the VAE when the vae/config.json at path declares a
// pixel codec (_class_name PixelCodecClass, patch_size, in_channels,
// scaling_factor), reporting whether it did.
func (l *loader) pixelCodec(path string) (bool, error) {
	var c struct {
		Class  string `json:"_class_name"`
		Patch  int    `json:"patch_size"`
		In     int    `json:"in_channels"`
		Latent int    `json:"latent_channels"`
	}
	if err := readJSON(path, &c); err != nil || c.Class != PixelCodecClass {
		return false, err
	}
	v, err := NewPixelCodec(l.e, c.In, c.Patch, l.p.ScalingFactor)
	if err != nil {
		return true, fmt.Errorf("%s: %w", path, err)
	}
	if c.Latent != 0 && c.Latent != v.Cfg.LatentChannels {
		return true, fmt.Errorf("%s: latent_channels %d, but %d channels with patch %d make %d", path, c.Latent, c.In, c.Patch, v.Cfg.LatentChannels)
	}
	l.p.VAE = v
	return true, nil
}

func (l *loader) buildText(ts tensorSet, cfg clip.TextConfig, file string, name func(string) string) error {
	if s := ts.shape("text_model.embeddings.token_embedding.weight"); len(s) == 2 {
		cfg.HiddenSize = s[1]
		if err := sniffText(file, cfg); err != nil {
			return err
		}
	}
	w, err := upload(l.e, ts, l.opts.F16Weights)
	if err != nil {
		return err
	}
	m, err := clip.NewTextModel(w, cfg)
	if err == nil {
		err = TextSchema(m.Cfg).check(w, name)
	}
	if err != nil {
		w.Release()
		return fmt.Errorf("%s: %w", file, err)
	}
	l.p.Text = m
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// readScaling reads scaling_factor from a vae/config.json.
func (l *loader) readScaling(path string) error {
	var c struct {
		ScalingFactor *float32 `json:"scaling_factor"`
	}
	if err := readJSON(path, &c); err != nil {
		return err
	}
	if c.ScalingFactor != nil {
		l.p.ScalingFactor = *c.ScalingFactor
	}
	return nil
}

func loadTokenizer(path string) (*clip.Tokenizer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return clip.LoadHF(path)
	}
	return clip.LoadBPE(path)
}

// LoadUNetFrom loads a U-Net from f, a safetensors file in diffusers
// layout (e.g. RandomCheckpoint's), completing cfg from the weights and
// checking them against its schema. Only opts.F16Weights applies.
func LoadUNetFrom(e *gpu.Engine, f *safetensors.File, cfg UNetConfig, opts LoadOptions) (*UNet, error) {
	l := &loader{e: e, opts: opts, p: &Pipeline{}}
	if err := l.buildUNet(identitySet(f, nil), cfg, f.Path, func(k string) string { return k }); err != nil {
		return nil, err
	}
	return l.p.UNet, nil
}

// LoadVAEFrom loads an AutoencoderKL from f in diffusers layout.
func LoadVAEFrom(e *gpu.Engine, f *safetensors.File, opts LoadOptions) (*VAE, error) {
	l := &loader{e: e, opts: opts, p: &Pipeline{}}
	if err := l.buildVAE(identitySet(f, legacyVAEKey), f.Path, func(k string) string { return k }); err != nil {
		return nil, err
	}
	return l.p.VAE, nil
}

// LoadTextFrom loads a CLIPTextModel from f in transformers layout
// ("text_model.*"), with the head count and activation of cfg.
func LoadTextFrom(e *gpu.Engine, f *safetensors.File, cfg clip.TextConfig, opts LoadOptions) (*clip.TextModel, error) {
	l := &loader{e: e, opts: opts, p: &Pipeline{}}
	if err := l.buildText(identitySet(f, nil), cfg, f.Path, func(k string) string { return k }); err != nil {
		return nil, err
	}
	return l.p.Text, nil
}
