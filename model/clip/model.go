package clip

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/imgproc"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

// Config is the part of transformers' CLIPConfig the model reads. Fields a
// config.json leaves out take transformers' defaults (text: 8 heads;
// vision: 12 heads; both quick-GELU, eps 1e-5); widths, depths and the
// projection size come from the weights.
type Config struct {
	Text          TextConfig   `json:"text_config"`
	Vision        VisionConfig `json:"vision_config"`
	ProjectionDim int          `json:"projection_dim"`
	// LogitScaleInit is used only when the checkpoint has no logit_scale.
	LogitScaleInit float64 `json:"logit_scale_init_value"`
}

// ReadConfig reads a CLIPModel config.json (nested text_config and
// vision_config; older files' text_config_dict / vision_config_dict are
// read when those are missing).
func ReadConfig(path string) (Config, error) {
	c := Config{LogitScaleInit: 2.6592}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	var old struct {
		TextRaw    json.RawMessage `json:"text_config"`
		VisionRaw  json.RawMessage `json:"vision_config"`
		TextDict   *TextConfig     `json:"text_config_dict"`
		VisionDict *VisionConfig   `json:"vision_config_dict"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	missing := func(r json.RawMessage) bool { return len(r) == 0 || string(r) == "null" }
	if missing(old.TextRaw) && old.TextDict != nil {
		c.Text = *old.TextDict
	}
	if missing(old.VisionRaw) && old.VisionDict != nil {
		c.Vision = *old.VisionDict
	}
	if c.Text.Heads == 0 {
		c.Text.Heads = 8
	}
	if c.Text.HiddenAct == "" {
		c.Text.HiddenAct = "quick_gelu"
	}
	if c.Vision.Heads == 0 {
		c.Vision.Heads = 12
	}
	if c.Vision.HiddenAct == "" {
		c.Vision.HiddenAct = "quick_gelu"
	}
	return c, nil
}

// Model is transformers' CLIPModel: both towers, visual_projection and
// text_projection (no bias) and logit_scale. CLIP-T and PickScore (a
// fine-tuned CLIP-H/14 in the same layout) are this model.
type Model struct {
	W      *nn.Weights // root: "text_model.*", "vision_model.*", projections
	Text   *TextModel
	Vision *VisionModel
	Cfg    Config
	// LogitScale is the stored parameter: logits are exp(LogitScale) x cosine.
	LogitScale float32
	// Tokenizer is the folder's own tokenizer (vocab.json + merges.txt in the
	// folder or its tokenizer/ subfolder), nil when it has none.
	Tokenizer *Tokenizer
	// Preprocess is the folder's preprocessor_config.json, else
	// CLIPImageProcessor's defaults at the model's image size.
	Preprocess imgproc.Config
	// Source names the weights file, for messages.
	Source string
}

// LoadOptions adjusts LoadModel.
type LoadOptions struct {
	// Config replaces DIR/config.json (e.g. the fixture's config_gelu.json).
	Config string
	// F16Weights keeps matrices and kernels packed as binary16 on the GPU.
	F16Weights bool
}

// LoadModel loads a transformers CLIPModel folder: config.json,
// model.safetensors (or the folder's only *.safetensors file), and when
// present preprocessor_config.json and a tokenizer.
func LoadModel(e *gpu.Engine, dir string, opts LoadOptions) (*Model, error) {
	cfgPath := opts.Config
	if cfgPath == "" {
		cfgPath = filepath.Join(dir, "config.json")
	}
	cfg, err := ReadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	wpath, err := findWeights(dir)
	if err != nil {
		return nil, err
	}
	f, err := safetensors.Open(wpath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := FromFile(e, f, cfg, opts.F16Weights)
	if err != nil {
		return nil, err
	}
	m.Source = wpath
	pp := filepath.Join(dir, "preprocessor_config.json")
	if _, err := os.Stat(pp); err == nil {
		if m.Preprocess, err = imgproc.ReadPreprocessorConfig(pp); err != nil {
			m.Release()
			return nil, err
		}
	}
	for _, td := range []string{dir, filepath.Join(dir, "tokenizer")} {
		if _, err := os.Stat(filepath.Join(td, "vocab.json")); err == nil {
			if m.Tokenizer, err = LoadHF(td); err != nil {
				m.Release()
				return nil, err
			}
			break
		}
	}
	return m, nil
}

func findWeights(dir string) (string, error) {
	p := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	ms, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	sort.Strings(ms)
	switch len(ms) {
	case 1:
		return ms[0], nil
	case 0:
		if _, err := os.Stat(filepath.Join(dir, "pytorch_model.bin")); err == nil {
			return "", fmt.Errorf("%s: only pytorch_model.bin; convert it to model.safetensors", dir)
		}
		return "", fmt.Errorf("%s: no model.safetensors", dir)
	}
	return "", fmt.Errorf("%s: several .safetensors files and no model.safetensors: %v", dir, ms)
}

// FromFile uploads a CLIPModel checkpoint (transformers keys) and builds
// the model; cfg supplies what the weights cannot tell (heads,
// activation, eps).
func FromFile(e *gpu.Engine, f *safetensors.File, cfg Config, f16 bool) (*Model, error) {
	w := nn.NewWeights(e)
	var err error
	e.Outside(func() { err = uploadCLIP(e, w, f, f16) })
	if err != nil {
		w.Release()
		return nil, err
	}
	fail := func(err error) (*Model, error) {
		w.Release()
		return nil, fmt.Errorf("%s: %w", f.Path, err)
	}
	m := &Model{W: w, Cfg: cfg}
	if m.Text, err = NewTextModel(w, cfg.Text); err != nil {
		return fail(err)
	}
	if m.Vision, err = NewVisionModel(w, cfg.Vision); err != nil {
		return fail(err)
	}
	vp, tp := w.Shape("visual_projection.weight"), w.Shape("text_projection.weight")
	if len(vp) != 2 || len(tp) != 2 {
		return fail(fmt.Errorf("missing visual_projection.weight or text_projection.weight: not a CLIPModel"))
	}
	if vp[1] != m.Vision.Cfg.HiddenSize || tp[1] != m.Text.Cfg.HiddenSize || vp[0] != tp[0] {
		return fail(fmt.Errorf("projections %v (vision) and %v (text) do not fit widths %d and %d",
			vp, tp, m.Vision.Cfg.HiddenSize, m.Text.Cfg.HiddenSize))
	}
	m.Cfg.ProjectionDim = vp[0]
	m.Cfg.Text, m.Cfg.Vision = m.Text.Cfg, m.Vision.Cfg
	m.LogitScale = float32(cfg.LogitScaleInit)
	if info, ok := f.Info("logit_scale"); ok {
		if info.Numel() != 1 {
			return fail(fmt.Errorf("logit_scale has shape %v, want a scalar", info.Shape))
		}
		v, _, err := f.Float32("logit_scale")
		if err != nil {
			return fail(err)
		}
		m.LogitScale = v[0]
	}
	m.Preprocess = imgproc.CLIP(m.Vision.Cfg.ImageSize)
	return m, nil
}

// uploadCLIP uploads every float tensor but logit_scale (read on the CPU)
// and the position_ids buffers, packing rank >= 2 tensors as binary16
// when f16 is set.
func uploadCLIP(e *gpu.Engine, w *nn.Weights, f *safetensors.File, f16 bool) error {
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		if name == "logit_scale" || filepath.Ext(name) == ".position_ids" {
			continue
		}
		switch info.DType {
		case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
		default:
			return fmt.Errorf("%s: tensor %q has dtype %s, want a float type", f.Path, name, info.DType)
		}
		v, _, err := f.Float32(name)
		if err != nil {
			return err
		}
		if f16 && len(info.Shape) >= 2 {
			h, err := e.F16FromFloat32(v, info.Shape...)
			if err != nil {
				return fmt.Errorf("%s: uploading %q: %w", f.Path, name, err)
			}
			w.SetF16(name, h)
			continue
		}
		t, err := e.Upload(gpu.Weights, v, info.Shape...)
		if err != nil {
			return fmt.Errorf("%s: uploading %q: %w", f.Path, name, err)
		}
		w.Set(name, t)
	}
	return nil
}

// Release frees the weights.
func (m *Model) Release() { m.W.Release() }

// LogitScaleExp is exp(logit_scale), the factor from cosine to logits
// (100 for released CLIP and PickScore checkpoints).
func (m *Model) LogitScaleExp() float32 { return float32(math.Exp(float64(m.LogitScale))) }

// ImageFeatures is get_image_features: visual_projection of the pooled
// class token, [N, P], not normalised; pixels [N, 3, S, S] normalised.
func (m *Model) ImageFeatures(pixels *gpu.Tensor) (*gpu.Tensor, error) {
	e := m.W.E
	s := e.Scope()
	out, err := m.Vision.Forward(pixels)
	if err != nil {
		s.Close()
		return nil, err
	}
	f := nn.Linear(m.W.Sub("visual_projection"), out.Pooled)
	s.Close(f)
	return f, e.Err()
}

// TextFeatures is get_text_features: text_projection of the pooled end
// token, [N, P], not normalised.
func (m *Model) TextFeatures(ids [][]int32) (*gpu.Tensor, error) {
	e := m.W.E
	s := e.Scope()
	out, err := m.Text.Forward(ids)
	if err != nil {
		s.Close()
		return nil, err
	}
	f := nn.Linear(m.W.Sub("text_projection"), out.Pooled)
	s.Close(f)
	return f, e.Err()
}

// Tokenize returns the 77 ids of each prompt: start token, at most 75 BPE
// ids, end token, padded with the end token (transformers' CLIPTokenizer
// with padding="max_length", truncation; PickScore's processor pads with
// id 0 and masks instead, which gives the same pooled features because of
// the causal mask). tok overrides the model's own tokenizer.
func (m *Model) Tokenize(tok *Tokenizer, prompts []string) ([][]int32, error) {
	if tok == nil {
		tok = m.Tokenizer
	}
	if tok == nil {
		return nil, fmt.Errorf("clip: %s has no tokenizer (vocab.json, merges.txt); pass one", m.Source)
	}
	ids := make([][]int32, len(prompts))
	for i, p := range prompts {
		a, _ := tok.EncodeSD(p)
		ids[i] = a[:]
	}
	return ids, nil
}

// EmbedTexts returns the L2-normalised text embeddings [len(prompts)][P]
// (tok as in Tokenize).
func (m *Model) EmbedTexts(tok *Tokenizer, prompts []string) ([][]float32, error) {
	ids, err := m.Tokenize(tok, prompts)
	if err != nil {
		return nil, err
	}
	var f *gpu.Tensor
	m.W.E.NoGrad(func() { f, err = m.TextFeatures(ids) })
	if err != nil {
		return nil, err
	}
	defer f.Release()
	v, err := f.Read()
	if err != nil {
		return nil, err
	}
	return Normalized(v, len(prompts)), nil
}

// EmbedPixels returns the L2-normalised image embeddings of normalised
// pixels (data of [n, 3, S, S]).
func (m *Model) EmbedPixels(pixels []float32, n int) ([][]float32, error) {
	e := m.W.E
	s := m.Vision.Cfg.ImageSize
	if len(pixels) != n*3*s*s {
		return nil, fmt.Errorf("clip: %d pixel values for %d images of 3x%dx%d", len(pixels), n, s, s)
	}
	var v []float32
	var err error
	e.NoGrad(func() {
		sc := e.Scope()
		defer sc.Close()
		var f *gpu.Tensor
		if f, err = m.ImageFeatures(e.FromSlice(pixels, n, 3, s, s)); err != nil {
			return
		}
		v, err = f.Read()
	})
	if err != nil {
		return nil, err
	}
	return Normalized(v, n), nil
}

// Normalized splits v into n rows and divides each by its L2 norm
// (float64 accumulation).
func Normalized(v []float32, n int) [][]float32 {
	d := len(v) / n
	out := make([][]float32, n)
	for i := range out {
		row := v[i*d : (i+1)*d]
		s := 0.0
		for _, x := range row {
			s += float64(x) * float64(x)
		}
		inv := 1 / math.Sqrt(s)
		r := make([]float32, d)
		for j, x := range row {
			r[j] = float32(float64(x) * inv)
		}
		out[i] = r
	}
	return out
}

// Dot is the float64-accumulated dot product of two embeddings (the
// cosine when both are normalised).
func Dot(a, b []float32) float64 {
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
