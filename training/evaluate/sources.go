package evaluate

import (
	"fmt"
	"image"
	_ "image/jpeg" // reference photos
	_ "image/png"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/dino"
	"github.com/instructbooth/instructbooth/model/imagereward"
	"github.com/instructbooth/instructbooth/model/metrics"
	"github.com/instructbooth/instructbooth/training/data"
)

// Env is what a metric opener may use.
type Env struct {
	Engine *gpu.Engine
	// Tokenizer is used by CLIP models whose folder has none (the diffusion
	// model's CLIP tokenizer: the same BPE vocabulary).
	Tokenizer *clip.Tokenizer
	// F16Weights keeps metric models' matrices as binary16 on the GPU.
	F16Weights bool
}

// Opener loads a metric's model from path.
type Opener func(env *Env, path string) (m Metric, release func(), err error)

// Kind tells whether a metric scores against prompts or against the
// subject's reference images.
type Kind int

const (
	TextMetric Kind = iota
	SubjectMetric
)

type registered struct {
	open Opener
	kind Kind
	doc  string
}

// builtin lists the metrics that need no model file: their spec is the
// bare name.
var builtin = map[string]bool{}

var (
	regMu    sync.Mutex
	registry = map[string]registered{
		"clip-t": {openCLIP(func(m *clip.Model, t *clip.Tokenizer) Metric { return metrics.NewCLIPT(m, t) }), TextMetric,
			"cosine of CLIP text and image embeddings (a transformers CLIPModel folder)"},
		"pickscore": {openCLIP(func(m *clip.Model, t *clip.Tokenizer) Metric { return metrics.NewPickScore(m, t) }), TextMetric,
			"exp(logit_scale) x cosine with the PickScore_v1 CLIPModel folder"},
		"clip-i": {openCLIP(func(m *clip.Model, _ *clip.Tokenizer) Metric {
			return &metrics.EmbeddingFidelity{Label: "clip-i", Embedder: &metrics.CLIPImageEmbedder{Model: m}}
		}), SubjectMetric, "mean cosine of CLIP image embeddings to the reference images (a CLIPModel folder)"},
		"imagereward": {openImageReward, TextMetric,
			"ImageReward's normalised reward (ImageReward.pt or .safetensors; bert-base-uncased vocab.txt beside it or in $INSTRUCTBOOTH_BERT_VOCAB)"},
		"dino": {openDINO, SubjectMetric,
			"mean cosine of DINO ViT [CLS] embeddings to the reference images (dino_vits16.pth or a transformers ViTModel folder)"},
	}
)

func openImageReward(env *Env, path string) (Metric, func(), error) {
	m, err := imagereward.Load(env.Engine, path, imagereward.Options{})
	if err != nil {
		return nil, nil, err
	}
	return metrics.NewImageReward(m), m.Release, nil
}

func openDINO(env *Env, path string) (Metric, func(), error) {
	m, err := dino.Load(env.Engine, path, dino.Options{})
	if err != nil {
		return nil, nil, err
	}
	return metrics.NewDINO(m), m.Release, nil
}

// RegisterMetric adds (or replaces) a metric name for ParseMetrics, e.g.
// "imagereward" and "dino" once their models exist.
func RegisterMetric(name string, kind Kind, doc string, o Opener) {
	regMu.Lock()
	defer regMu.Unlock()
	registry[name] = registered{open: o, kind: kind, doc: doc}
	delete(builtin, name)
}

// RegisterBuiltinMetric adds (or replaces) a metric that needs no model
// file (e.g. the toy world's scores): ParseMetrics takes it by its bare
// name, and open gets no path.
func RegisterBuiltinMetric(name string, kind Kind, doc string, open func(env *Env) (Metric, func(), error)) {
	regMu.Lock()
	defer regMu.Unlock()
	registry[name] = registered{open: func(env *Env, _ string) (Metric, func(), error) { return open(env) }, kind: kind, doc: doc}
	builtin[name] = true
}

// MetricNames lists the registered metrics with their descriptions.
func MetricNames() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var out []string
	for _, k := range sortedKeys(registry) {
		out = append(out, k+": "+registry[k].doc)
	}
	return out
}

func openCLIP(wrap func(*clip.Model, *clip.Tokenizer) Metric) Opener {
	return func(env *Env, path string) (Metric, func(), error) {
		m, err := clip.LoadModel(env.Engine, path, clip.LoadOptions{F16Weights: env.F16Weights})
		if err != nil {
			return nil, nil, err
		}
		tok := m.Tokenizer
		if tok == nil {
			tok = env.Tokenizer
		}
		return wrap(m, tok), m.Release, nil
	}
}

// ParseMetrics turns "name:PATH,name:PATH" (a builtin metric by its bare
// name) into metric sources, checking
// every name and path now (before any image is drawn); the models load
// when scoring opens them, with env as it is then. subject reports
// whether any of them needs reference images.
func ParseMetrics(spec string, env *Env) (sources []MetricSource, subject bool, err error) {
	regMu.Lock()
	defer regMu.Unlock()
	seen := map[string]bool{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, path, ok := strings.Cut(item, ":")
		reg, known := registry[name]
		if !known {
			return nil, false, fmt.Errorf("metric %q is not available in this build (available: %s)", name, strings.Join(sortedKeys(registry), ", "))
		}
		switch {
		case builtin[name] && ok:
			return nil, false, fmt.Errorf("metric %q: %s needs no model path; give the bare name", item, name)
		case !builtin[name] && (!ok || path == ""):
			return nil, false, fmt.Errorf("metric %q: want NAME:PATH", item)
		}
		if seen[name] {
			return nil, false, fmt.Errorf("metric %q given twice", name)
		}
		seen[name] = true
		if !builtin[name] {
			if _, err := os.Stat(path); err != nil {
				return nil, false, fmt.Errorf("metric %s: %w", name, err)
			}
		}
		subject = subject || reg.kind == SubjectMetric
		open, p := reg.open, path
		sources = append(sources, MetricSource{Name: name, Open: func() (Metric, func(), error) { return open(env, p) }})
	}
	if len(sources) == 0 {
		return nil, false, fmt.Errorf("no metrics given")
	}
	return sources, subject, nil
}

// ReadReferenceImages decodes every PNG, JPEG and WebP file of dir (sorted
// by name; hidden and other files are ignored) through training/data, so
// JPEG EXIF orientation is applied as in training. A damaged image is an
// error naming it.
func ReadReferenceImages(dir string) ([]image.Image, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".png", ".jpg", ".jpeg", ".webp":
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	var out []image.Image
	for _, n := range names {
		img, err := data.DecodeFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PNG, JPEG or WebP images", dir)
	}
	return out, nil
}
