package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training/data"
	"github.com/instructbooth/instructbooth/training/evaluate"
	"github.com/instructbooth/instructbooth/training/reward"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
)

// PrefEvalMetrics remembers the Evaluate form's last metrics field (names
// with their model paths), so paths are typed once.
const PrefEvalMetrics = "evalMetrics"

// metricNames maps the names the app accepts to training/evaluate's.
var metricNames = map[string]string{
	"clip_t": "clip-t", "clip-t": "clip-t", "clipt": "clip-t",
	"image_reward": "imagereward", "imagereward": "imagereward", "image-reward": "imagereward",
	"pickscore": "pickscore", "pick_score": "pickscore",
	"dino":   "dino",
	"clip_i": "clip-i", "clip-i": "clip-i",
	// The toy world's scores (training/toyworld/demo), with no model file.
	"toy_align": demo.AlignMetric, "toy-align": demo.AlignMetric, "toyworld_align": demo.AlignMetric, demo.AlignMetric: demo.AlignMetric,
	"toy_fidelity": demo.FidelityMetric, "toy-fidelity": demo.FidelityMetric, "toyworld_fidelity": demo.FidelityMetric, demo.FidelityMetric: demo.FidelityMetric,
}

// builtinMetrics are the metrics that need no model file: the spec names
// them bare.
var builtinMetrics = map[string]bool{demo.AlignMetric: true, demo.FidelityMetric: true}

var toyRegistered sync.Once

// registerToyWorld makes the toy world's reward ("toyworld", in
// reward.Default) and its builtin metrics available; every job and form
// that takes a reward or metric spec calls it first.
func registerToyWorld() {
	toyRegistered.Do(func() { demo.Register(reward.Default) })
}

// canonicalMetric is training/evaluate's name of a metric (unknown names
// are returned as given; evaluate.ParseMetrics reports them).
func canonicalMetric(name string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	if c, ok := metricNames[n]; ok {
		return c
	}
	return n
}

// metricSpec turns the configuration's metrics ("clip_t" or
// "clip_t:PATH") and MetricPaths into evaluate.ParseMetrics' spec
// "clip-t:PATH,...". A metric without a model path is an error naming it,
// except the builtin ones (toy_align, toy_fidelity), which take none.
func metricSpec(cfg EvaluateConfig) (string, error) {
	paths := map[string]string{}
	for k, v := range cfg.MetricPaths {
		paths[canonicalMetric(k)] = v
	}
	var items, missing []string
	for _, m := range cfg.Metrics {
		name, path, _ := strings.Cut(strings.TrimSpace(m), ":")
		name = canonicalMetric(name)
		if builtinMetrics[name] {
			if strings.TrimSpace(path) != "" {
				return "", fmt.Errorf("evaluate: %s needs no model file: write it without a path", name)
			}
			items = append(items, name)
			continue
		}
		if path = strings.TrimSpace(path); path == "" {
			path = paths[name]
		}
		if path == "" {
			missing = append(missing, name)
			continue
		}
		items = append(items, name+":"+path)
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("evaluate: no model file for %s: write each metric as NAME:PATH in the Metrics field "+
			"(clip_t and pickscore: a CLIPModel folder; image_reward: ImageReward.pt; dino: dino_vits16.pth; toy_align and toy_fidelity take none)", strings.Join(missing, ", "))
	}
	if len(items) == 0 {
		return "", fmt.Errorf("evaluate: no metrics")
	}
	return strings.Join(items, ","), nil
}

// evalModel is one model variant of an evaluation.
type evalModel struct {
	Name         string // the report's run name: base, dreambooth, aligned
	CheckpointID string // "" for the base model
}

// evalModels lists the variants of cfg: the base model (when Base is set
// or no checkpoint is given), CheckpointIDs, then CheckpointID, each named
// after the kind of run that trained it.
func evalModels(db *store.DB, cfg EvaluateConfig) ([]evalModel, error) {
	var out []evalModel
	ids := append(append([]string(nil), cfg.CheckpointIDs...), cfg.CheckpointID)
	trained := false
	for _, id := range ids {
		trained = trained || id != ""
	}
	if cfg.Base || !trained {
		out = append(out, evalModel{Name: "base"})
	}
	used := map[string]int{"base": 1}
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		c, err := db.Checkpoint(id)
		if err != nil {
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		if c.Kind != store.CheckpointLoRA {
			return nil, fmt.Errorf("evaluate: checkpoint %s is a full fine-tune (%s); only LoRA checkpoints can be evaluated", id, c.Path)
		}
		name := "checkpoint"
		if r, err := db.Run(c.RunID); err == nil {
			switch r.Kind {
			case store.KindPersonalize:
				name = "dreambooth"
			case store.KindAlign:
				name = "aligned"
			}
		}
		if used[name]++; used[name] > 1 {
			name = fmt.Sprintf("%s-%d", name, used[name])
		}
		out = append(out, evalModel{Name: name, CheckpointID: id})
	}
	return out, nil
}

// ComparisonCheckpoints are the checkpoints an evaluation of a trained
// model compares it with besides the base model: for an aligned model the
// DreamBooth checkpoint its alignment started from (the paper's Table 2:
// base, DreamBooth, aligned); none otherwise.
func ComparisonCheckpoints(db *store.DB, checkpointID string) []string {
	c, err := db.Checkpoint(checkpointID)
	if err != nil {
		return nil
	}
	r, err := db.Run(c.RunID)
	if err != nil || r.Kind != store.KindAlign {
		return nil
	}
	var ac AlignConfig
	if json.Unmarshal(r.Config, &ac) != nil || ac.CheckpointID == "" || ac.CheckpointID == checkpointID {
		return nil
	}
	if _, err := db.Checkpoint(ac.CheckpointID); err != nil {
		return nil
	}
	return []string{ac.CheckpointID}
}

// evaluateJob draws the same images (seed + p·N + k) with every model
// variant, stores each in the gallery as it is done, scores them all with
// the metrics (training/evaluate), then records the scores on the gallery
// images, the mean of each metric per variant as the run's metrics
// ("<metric>/<variant>") and the report files (results.md, the CSV
// files, chart.png, grid.png) in RunDir. A resumed run keeps the images it
// stored and draws the rest.
type evaluateJob struct {
	env    JobEnv
	cfg    EvaluateConfig
	subj   store.Subject
	models []evalModel
	spec   string
}

// NewEvaluateJob is the Factory of evaluate runs (Config: EvaluateConfig).
func NewEvaluateJob(env JobEnv) (Job, error) {
	var cfg EvaluateConfig
	if err := json.Unmarshal(env.Run.Config, &cfg); err != nil {
		return nil, fmt.Errorf("evaluate: configuration: %w", err)
	}
	if len(cfg.Prompts) == 0 {
		return nil, fmt.Errorf("evaluate: no prompts")
	}
	registerToyWorld()
	if cfg.ImagesPerPrompt < 1 {
		cfg.ImagesPerPrompt = 1
	}
	spec, err := metricSpec(cfg)
	if err != nil {
		return nil, err
	}
	models, err := evalModels(env.DB, cfg)
	if err != nil {
		return nil, err
	}
	j := &evaluateJob{env: env, cfg: cfg, models: models, spec: spec}
	if env.Run.SubjectID != "" {
		if j.subj, err = env.DB.Subject(env.Run.SubjectID); err != nil {
			return nil, fmt.Errorf("evaluate: subject: %w", err)
		}
	}
	return j, nil
}

func (j *evaluateJob) Run(ctx context.Context, report func(Progress)) (err error) {
	env, run, cfg := j.env, j.env.Run, j.cfg
	dir := RunDir(env.DB, run.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("evaluate: work folder: %w", err)
	}
	log := openRunLog(dir)
	defer log.Close()
	defer func() {
		if err != nil {
			log.Printf("stopped: %v", err)
		}
	}()
	pl, bm, err := env.Models.Base(run.BaseModelID)
	if err != nil {
		return err
	}
	modelName := bm.Name
	if modelName == "" {
		modelName = filepath.Base(bm.Path)
	}
	evEnv := &evaluate.Env{Engine: env.Engine}
	sources, needRefs, err := evaluate.ParseMetrics(j.spec, evEnv)
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	var refs []image.Image
	if needRefs {
		if refs, err = j.references(log); err != nil {
			return err
		}
	}
	size := NativeSize(bm.Path)
	p := generate.Params{Steps: cfg.Steps, Guidance: float32(cfg.Guidance), Width: size, Height: size}
	if cfg.Guidance >= 0 && cfg.Guidance <= 1 {
		p.Guidance = 1 // off (0 would mean the default)
	}
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		return err
	}
	n := cfg.ImagesPerPrompt
	nImages := len(j.models) * len(cfg.Prompts) * n
	genTotal := nImages * p.Steps
	total := genTotal + nImages*len(sources)
	if !env.Resumed {
		log.Printf("evaluate %d model(s) x %d prompts x %d images: %s", len(j.models), len(cfg.Prompts), n, j.spec)
	}

	// Images stored by an earlier attempt of this run (drawn in order, so
	// progress starts after them).
	type key struct {
		ckpt, prompt string
		seed         int64
	}
	have := map[key]store.GalleryImage{}
	if old, err := env.DB.Gallery(store.GalleryFilter{RunID: run.ID}); err == nil {
		for _, g := range old {
			have[key{g.CheckpointID, g.Prompt, g.Seed}] = g
		}
	}
	report(Progress{Step: min(len(have), nImages) * p.Steps, Total: total})

	var samples []evaluate.Sample
	var ids []string // gallery id per sample
	done := 0
	for _, m := range j.models {
		release := func() {}
		attached := false
		for pi, tmpl := range cfg.Prompts {
			prompt := evaluate.Prompt{Template: tmpl}
			text := prompt.Fill(j.subj.Identifier, j.subj.Class)
			for k := 0; k < n; k++ {
				seed := evaluate.SeedFor(cfg.Seed, pi, k, n)
				if g, ok := have[key{m.CheckpointID, text, int64(seed)}]; ok {
					img, err := j.galleryImage(g.ID)
					if err == nil {
						samples = append(samples, evaluate.Sample{Run: m.Name, Prompt: pi, Text: text, Index: k, Seed: seed, Image: img})
						ids = append(ids, g.ID)
						done += p.Steps
						continue
					}
					log.Printf("stored image %s unreadable (%v): drawing it again", g.ID, err)
				}
				if !attached {
					if release, err = j.attach(pl, m); err != nil {
						return err
					}
					attached = true
				}
				ip := p
				ip.Seed = seed
				base := done
				got, err := evaluate.GenerateImages(ctx, evaluate.GenerateConfig{
					Components: components(pl, modelName), Runs: []evaluate.Run{{Name: m.Name}},
					Prompts: []evaluate.Prompt{prompt}, Identifier: j.subj.Identifier, Class: j.subj.Class,
					ImagesPerPrompt: 1, Params: ip,
				}, func(pr evaluate.Progress) { report(Progress{Step: base + pr.Done, Total: total}) })
				if err != nil {
					release()
					return err
				}
				s := got[0]
				s.Prompt, s.Index = pi, k
				id, err := storeSample(env, s, ip, bm.ID, m.CheckpointID, modelName+" "+m.Name)
				if err != nil {
					release()
					return err
				}
				samples = append(samples, s)
				ids = append(ids, id)
				done += p.Steps
				report(Progress{Step: done, Total: total, Preview: s.Image})
			}
		}
		release()
	}

	evEnv.Tokenizer = pl.Tokenizer // for CLIP folders without a tokenizer
	env.Models.Trim(env.MemoryBudget)
	rep, err := evaluate.Score(ctx, samples, refs, sources, func(pr evaluate.Progress) {
		report(Progress{Step: genTotal + pr.Done, Total: total})
	})
	if err != nil {
		return err
	}
	paths, err := rep.WriteFiles(dir)
	if err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	means, err := recordScores(env.DB, rep, ids, log)
	if err != nil {
		return err
	}
	log.Printf("wrote %s", strings.Join(paths, ", "))
	report(Progress{Step: total, Total: total, Metrics: means})
	return nil
}

// attach loads a variant's LoRA against pl and attaches it; the returned
// function detaches and releases it.
func (j *evaluateJob) attach(pl *sd.Pipeline, m evalModel) (func(), error) {
	if m.CheckpointID == "" {
		return func() {}, nil
	}
	l, err := LoadCheckpointLoRA(j.env.DB, m.CheckpointID, pl)
	if err != nil {
		return nil, fmt.Errorf("evaluate: %s: %w", m.Name, err)
	}
	t := Targets(pl)
	l.Attach(t)
	return func() {
		lora.Detach(t)
		l.Release()
	}, nil
}

// storeSample adds an evaluation sample to the gallery as an image of the
// job's run and subject, drawn with p (its prompt and count are set here)
// by the base model baseID with checkpointID ("" none); label names the
// model in the PNG's parameters. The scores come later (recordScores).
func storeSample(env JobEnv, s evaluate.Sample, p generate.Params, baseID, checkpointID, label string) (string, error) {
	p.Prompt, p.Count = s.Text, 1
	var buf bytes.Buffer
	if err := generate.EncodePNG(&buf, s.Image, generate.Metadata(p, label)); err != nil {
		return "", err
	}
	g := store.GalleryImage{
		RunID: env.Run.ID, SubjectID: env.Run.SubjectID, Prompt: s.Text, Seed: int64(s.Seed),
		BaseModelID: baseID, CheckpointID: checkpointID,
		Sampler: store.Sampler{Name: p.Sampler, Steps: p.Steps, Guidance: float64(p.Guidance), Width: p.Width, Height: p.Height},
	}
	if err := env.DB.AddGalleryImage(&g, buf.Bytes()); err != nil {
		return "", err
	}
	return g.ID, nil
}

// recordScores writes every sample's scores onto its gallery image (ids[i]
// is the image of rep.Samples[i]), logs each run's mean ± standard error
// and returns the means as run metrics "<metric>/<run>".
func recordScores(db *store.DB, rep *evaluate.Report, ids []string, log *runLog) (map[string]float64, error) {
	for i, id := range ids {
		scores := map[string]float64{}
		for _, name := range rep.Metrics {
			scores[name] = rep.Scores[name][i]
		}
		if err := db.SetGalleryScores(id, scores); err != nil {
			return nil, err
		}
	}
	means := map[string]float64{}
	for _, r := range rep.Runs {
		var parts []string
		for _, name := range rep.Metrics {
			s := rep.Summary(r, name)
			means[name+"/"+r] = s.Mean
			parts = append(parts, fmt.Sprintf("%s %s", name, s))
		}
		log.Printf("%s: %s", r, strings.Join(parts, ", "))
	}
	return means, nil
}

// galleryImage decodes a stored gallery PNG as the NRGBA image scorers
// and the report's grid take.
func (j *evaluateJob) galleryImage(id string) (*image.NRGBA, error) {
	b, err := j.env.DB.GalleryImagePNG(id)
	if err != nil {
		return nil, err
	}
	img, err := decodeBytes(b)
	if err != nil {
		return nil, err
	}
	if n, ok := img.(*image.NRGBA); ok {
		return n, nil
	}
	n := image.NewNRGBA(img.Bounds())
	draw.Draw(n, n.Bounds(), img, img.Bounds().Min, draw.Src)
	return n, nil
}

// references decodes the subject's photos for subject metrics (DINO,
// CLIP-I); unusable photos are logged and left out.
func (j *evaluateJob) references(log *runLog) ([]image.Image, error) {
	if j.subj.ID == "" {
		return nil, fmt.Errorf("evaluate: subject metrics need the run's subject and its photos")
	}
	var out []image.Image
	for _, ref := range j.subj.Images {
		b, err := j.env.DB.SubjectImage(j.subj.ID, ref.Hash)
		if err == nil {
			var img image.Image
			if img, _, err = data.DecodeBytes(ref.Name, b); err == nil {
				out = append(out, img)
				continue
			}
		}
		log.Printf("reference photo skipped: %v", err)
	}
	if len(out) == 0 {
		return nil, errors.New("evaluate: subject metrics need reference photos, and the subject has none that can be read")
	}
	return out, nil
}
