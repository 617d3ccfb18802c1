package app

// The toy world as a "try it" subject: the built-in toy base model and
// the toy world's novel subject ("sks star") in the library, with the
// normal forms' defaults suited to them, and a "demo" run that runs the
// whole method on them in one go (training/toyworld/demo).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"fyne.io/fyne/v2"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training/evaluate"
	"github.com/instructbooth/instructbooth/training/toyworld"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
)

// The toy subject and the toy base model have fixed ids, so that the app
// finds them again (whatever the user renames) and adding them twice
// changes nothing.
const (
	ToySubjectID = "7a0c5e1d-3b2f-4c8e-9d61-0f4b2a6c8e17"
	ToyModelID   = "c3e1f0a2-5d4b-4e7a-8f90-6b2d1c3e5a48"
	// ToyArch is the toy base model's store.BaseModel.Arch.
	ToyArch = "toyworld"
)

// The toy subject's photos: TheSubject().Photos(toyPhotoSeed, toyPhotos)
// rendered at toyPhotoSize pixels (the demo's own photos use the same
// seed, at the model's 32 pixels).
const (
	toyPhotoSeed = 1
	toyPhotos    = 5
	toyPhotoSize = 128
)

// demoFolder is demo.Run's output folder inside a demo run's RunDir.
const demoFolder = "toyworld-demo"

// DemoDir is the folder a demo run works in (demo.Options.Out): a resumed
// run continues from what it holds.
func DemoDir(db *store.DB, runID string) string {
	return filepath.Join(RunDir(db, runID), demoFolder)
}

// hasBuiltinToyModel reports whether this build carries the trained toy
// model (training/toyworld/base holds model files, not only TRAINING.md).
func hasBuiltinToyModel() bool {
	return slices.Contains(toyworld.BuiltinFiles(), "model_index.json")
}

// BuiltinToyModel returns the folder of the toy base model this binary
// carries (written into the user's cache on first use), or an error when
// the build has none.
func BuiltinToyModel() (string, error) { return toyworld.BuiltinModel("") }

// defaultToyModel is BuiltinToyModel when the build has the model, else
// nil.
func defaultToyModel() func() (string, error) {
	if hasBuiltinToyModel() {
		return BuiltinToyModel
	}
	return nil
}

// isToySubject reports whether s is the toy world's subject.
func isToySubject(s store.Subject) bool { return s.ID == ToySubjectID }

// SeedToyWorld records the toy base model at modelDir (id ToyModelID,
// Arch ToyArch; an existing record gets the new path) and, unless the
// database has it, the toy subject (id ToySubjectID: "Star (toy world)",
// class "star", identifier "sks", its five photos). modelDir must be a
// diffusers folder.
func SeedToyWorld(db *store.DB, modelDir string) (store.Subject, store.BaseModel, error) {
	modelDir = filepath.Clean(modelDir)
	if _, err := os.Stat(filepath.Join(modelDir, "model_index.json")); err != nil {
		return store.Subject{}, store.BaseModel{}, fmt.Errorf("toy world model %s: not a diffusers folder: %w", modelDir, err)
	}
	bm, err := db.BaseModel(ToyModelID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Subject{}, bm, err
	}
	if err != nil || bm.Path != modelDir {
		bm = store.BaseModel{ID: ToyModelID, Name: "Toy world (built-in)", Path: modelDir, Arch: ToyArch, Added: bm.Added}
		filepath.WalkDir(modelDir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					bm.Size += info.Size()
				}
			}
			return nil
		})
		if err := db.PutBaseModel(&bm); err != nil {
			return store.Subject{}, bm, err
		}
	}
	s, err := db.Subject(ToySubjectID)
	if err == nil {
		return s, bm, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return s, bm, err
	}
	ts := toyworld.TheSubject()
	s = store.Subject{ID: ToySubjectID, Name: "Star (toy world)", Class: "star", Identifier: ts.Token(),
		Description: "The built-in demo subject of the toy world: a magenta star with yellow stripes and one arm cut short, " +
			"drawn by the toy world, for the toy base model. “Try the whole method” runs DreamBooth, DDPO and the evaluation on it in one go."}
	var imgs []store.Image
	for i, sc := range ts.Photos(toyPhotoSeed, toyPhotos) {
		img, err := toyworld.Render(sc, toyPhotoSize)
		if err != nil {
			return s, bm, err
		}
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			return s, bm, err
		}
		imgs = append(imgs, store.Image{Name: fmt.Sprintf("star-%d.png", i+1), Data: buf.Bytes()})
	}
	if err := db.PutSubject(&s); err != nil {
		return s, bm, err
	}
	if _, _, err := db.AddSubjectImages(s.ID, imgs); err != nil {
		return s, bm, err
	}
	s, err = db.Subject(s.ID)
	return s, bm, err
}

// toyModel is where the UI finds the toy model: Options.ToyModel, else the
// built-in one; nil when there is none.
func (u *UI) toyModel() func() (string, error) { return u.opts.ToyModel }

// toyInLibrary reports whether the database has both the toy subject and
// the toy model.
func (u *UI) toyInLibrary() bool {
	_, errS := u.DB.Subject(ToySubjectID)
	_, errM := u.DB.BaseModel(ToyModelID)
	return errS == nil && errM == nil
}

// AddToyWorld adds the toy subject and model to the library (SeedToyWorld
// with Options.ToyModel's folder) and makes the toy model the default
// base model when none is chosen. It may write the built-in model into
// the user's cache first, so call it off the UI goroutine when that can
// take a while.
func (u *UI) AddToyWorld() (store.Subject, error) {
	src := u.toyModel()
	if src == nil {
		return store.Subject{}, errors.New("this build of InstructBooth has no toy world model (training/toyworld/base holds no model); train one with scripts/train-toyworld.sh")
	}
	dir, err := src()
	if err != nil {
		return store.Subject{}, err
	}
	s, bm, err := SeedToyWorld(u.DB, dir)
	if err != nil {
		return s, err
	}
	if _, ok := u.DefaultBaseModel(); !ok {
		u.App.Preferences().SetString(PrefBaseModel, bm.ID)
	}
	return s, nil
}

// OpenToyWorld adds the toy world to the library in the background and
// opens its subject (the "Add toy world demo" button and Options.ToyDemo).
func (u *UI) OpenToyWorld() {
	go func() {
		s, err := u.AddToyWorld()
		fyne.Do(func() {
			if err != nil {
				u.showError(err)
				return
			}
			u.Library.Refresh()
			u.Settings.Refresh()
			u.OpenSubject(s.ID)
		})
	}()
}

// refreshToyModel points the toy model's record at the folder the toy
// model source gives now (the built-in model's folder carries a hash of
// the model, so a new binary has a new one; a cleared cache is written
// again).
func (u *UI) refreshToyModel() {
	src := u.toyModel()
	if src == nil {
		return
	}
	bm, err := u.DB.BaseModel(ToyModelID)
	if err != nil {
		return
	}
	if dir, err := src(); err == nil && filepath.Clean(dir) != bm.Path {
		bm.Path = filepath.Clean(dir)
		_ = u.DB.PutBaseModel(&bm)
	}
}

// baseModelFor is the base model runs on the subject use: the toy model
// for the toy subject (when it is in the library), else the default.
func (u *UI) baseModelFor(subjectID string) (store.BaseModel, bool) {
	if subjectID == ToySubjectID {
		if bm, err := u.DB.BaseModel(ToyModelID); err == nil {
			return bm, true
		}
	}
	return u.DefaultBaseModel()
}

// The forms' defaults for the toy subject: the demo's settings where the
// app's runs have them (toy prompts, the toyworld reward and metrics,
// steps sized for a 32x32 model on a CPU).

func toyPersonalizeConfig(s store.Subject) PersonalizeConfig {
	c := PersonalizeConfig{
		InstancePrompt: promptFor("a {id} {class}", s), ClassPrompt: promptFor("a {class}", s),
		Rank: 4, Alpha: 4, LearningRate: 1e-3, Steps: 200, BatchSize: 1,
		PriorPreservation: true, ClassImages: 24, PriorWeight: 1, CheckpointEvery: 50, Mode: ModeLoRA,
	}
	return c
}

func toyAlignConfig(s store.Subject) AlignConfig {
	// Both prompt kinds, as the demo trains ("a {id} {class} <activity>"
	// and "a {class} <activity>").
	var prompts []string
	for _, a := range demo.TrainActivities {
		prompts = append(prompts, promptFor("a {id} {class} "+a, s), promptFor("a {class} "+a, s))
	}
	d := demo.DefaultOptions("", "")
	return AlignConfig{
		Prompts: prompts, Reward: demo.RewardName, Epochs: d.Epochs, SamplesPerEpoch: d.Samples,
		SamplesPerPrompt: d.PerPrompt, PooledStd: d.PooledStd, SamplingSteps: d.Steps, Eta: 1,
		TimestepFraction: d.TimestepFraction, EarlyFraction: d.EarlyFraction, StepBaseline: d.StepBaseline,
		Guidance: float64(d.Guidance), LearningRate: float64(d.LR), BatchSize: d.Batch, AccumBatches: d.AccumBatches, InnerEpochs: 1,
		ClipRange: d.ClipRange, AdvClipMax: 5, CheckpointEvery: 2,
	}
}

func toyEvaluateConfig() EvaluateConfig {
	var prompts []string
	for _, a := range demo.HeldOutActivities {
		prompts = append(prompts, "a {} "+a)
	}
	return EvaluateConfig{Metrics: []string{"toy_align", "toy_fidelity"}, Prompts: prompts, ImagesPerPrompt: 2, Steps: 20, Guidance: 5}
}

// DemoConfig is the configuration of a demo run (the whole method on the
// toy world).
type DemoConfig struct {
	Seed uint64 `json:"seed"` // demo.Options.Seed; 0 keeps the options' own
}

// DemoOptions builds demo.Run's options for a run from its folder and the
// toy base model's folder (demo.DefaultOptions in the app; smaller ones
// in tests).
type DemoOptions func(out, base string) demo.Options

// NewDemoJob is the Factory of demo runs with demo.DefaultOptions.
func NewDemoJob(env JobEnv) (Job, error) { return DemoJobFactory(demo.DefaultOptions)(env) }

// DemoJobFactory returns the Factory of demo runs with the given options:
// demo.Run (DreamBooth, DDPO, evaluation) on the run's base model in
// DemoDir, which a resumed run continues from. Progress: the stage as
// Phase, DreamBooth's "loss" per step and DDPO's mean "reward" per epoch
// as curves; demo.Run's log lines go to the run's log. At the end every
// evaluation image is stored in the gallery with its two scores, and the
// means per model as run metrics "<metric>/<model>".
func DemoJobFactory(options DemoOptions) Factory {
	return func(env JobEnv) (Job, error) {
		var cfg DemoConfig
		if err := json.Unmarshal(env.Run.Config, &cfg); err != nil {
			return nil, fmt.Errorf("demo: configuration: %w", err)
		}
		if env.Run.BaseModelID == "" {
			return nil, ErrNoBaseModel
		}
		bm, err := env.DB.BaseModel(env.Run.BaseModelID)
		if err != nil {
			return nil, fmt.Errorf("demo: base model: %w", err)
		}
		if _, err := os.Stat(filepath.Join(bm.Path, "model_index.json")); err != nil {
			return nil, fmt.Errorf("demo: the toy base model %q is not at %s (%v): add the toy world demo again from the Library", bm.Name, bm.Path, err)
		}
		o := options(DemoDir(env.DB, env.Run.ID), bm.Path)
		if cfg.Seed != 0 {
			o.Seed = cfg.Seed
		}
		return &demoJob{env: env, opts: o, base: bm}, nil
	}
}

type demoJob struct {
	env  JobEnv
	opts demo.Options
	base store.BaseModel
}

func (j *demoJob) Run(ctx context.Context, report func(Progress)) (err error) {
	env, o := j.env, j.opts
	dir := RunDir(env.DB, env.Run.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo: work folder: %w", err)
	}
	log := openRunLog(dir)
	defer log.Close()
	defer func() {
		if err != nil {
			log.Printf("stopped: %v", err)
		}
	}()
	if env.Resumed {
		log.Printf("resuming from %s", o.Out)
	} else {
		log.Printf("toy world demo on %s: DreamBooth %d steps, DDPO %d epochs x %d samples, evaluation on %d held-out prompts; folder %s",
			j.base.Path, o.DBSteps, o.Epochs, o.Samples, len(o.HeldOut), o.Out)
	}
	env.Models.Release() // the demo loads its own models, one stage at a time
	o.Log = func(line string) { log.Printf("%s", line) }
	o.Progress = func(p demo.Progress) { report(demoProgress(p, o.Epochs)) }
	res, err := demo.Run(ctx, env.Engine, o)
	if err != nil {
		return err
	}
	return j.storeResults(res, report, log)
}

// demoProgress turns a stage's progress into the runner's.
func demoProgress(p demo.Progress, epochs int) Progress {
	pr := Progress{Step: p.Step, Total: p.Total}
	switch p.Stage {
	case demo.StageClassImages:
		pr.Phase = "Class images"
	case demo.StageDreamBooth:
		pr.Phase = "DreamBooth"
		if v, ok := p.Metrics["loss"]; ok {
			pr.Metrics = map[string]float64{"loss": v}
		}
	case demo.StageSampling:
		pr.Phase = fmt.Sprintf("DDPO epoch %d/%d, sampling", p.Epoch, epochs)
	case demo.StageTraining:
		if v, ok := p.Metrics["reward"]; ok {
			// An epoch's end: the reward curve's point at the epoch.
			return Progress{Phase: "DDPO epochs", Step: p.Epoch, Total: epochs, Metrics: map[string]float64{"reward": v}}
		}
		pr.Phase = fmt.Sprintf("DDPO epoch %d/%d, training", p.Epoch, epochs)
	case demo.StageEvaluate:
		pr.Phase = "Evaluation"
	default:
		pr.Phase = p.Stage
	}
	return pr
}

// storeResults puts the evaluation's images into the gallery with their
// scores and reports the means per model (with the results grid as the
// run's preview).
func (j *demoJob) storeResults(res *demo.Result, report func(Progress), log *runLog) error {
	env, o, rep := j.env, j.opts, res.Report
	// Images of an earlier attempt that stopped after storing them.
	if old, err := env.DB.Gallery(store.GalleryFilter{RunID: env.Run.ID}); err == nil {
		for _, g := range old {
			if err := env.DB.DeleteGalleryImage(g.ID); err != nil {
				return err
			}
		}
	}
	ids := make([]string, len(rep.Samples))
	for i, s := range rep.Samples {
		b := s.Image.Bounds()
		p := generate.Params{Steps: o.EvalSteps, Guidance: o.Guidance, Seed: s.Seed, Width: b.Dx(), Height: b.Dy(), Sampler: "ddim"}
		id, err := storeSample(env, s, p, j.base.ID, "", "toyworld "+s.Run)
		if err != nil {
			return fmt.Errorf("demo: gallery: %w", err)
		}
		ids[i] = id
	}
	means, err := recordScores(env.DB, rep, ids, log)
	if err != nil {
		return fmt.Errorf("demo: gallery scores: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(demo.Summary(rep)), "\n") {
		log.Printf("%s", line)
	}
	log.Printf("done (this attempt took %s); results in %s", fmtDuration(res.Elapsed), filepath.Join(o.Out, demo.DirResults))
	var grid image.Image
	if b, err := os.ReadFile(filepath.Join(o.Out, demo.DirResults, evaluate.FileGrid)); err == nil {
		grid, _ = decodeBytes(b)
	}
	n := len(rep.Samples)
	report(Progress{Phase: "Evaluation", Step: n, Total: n, Metrics: means, Preview: grid})
	return nil
}

// StartDemo submits a demo run: the whole method on the toy subject with
// the toy base model.
func (u *UI) StartDemo() (store.Run, error) {
	if !u.Runner.Available(store.KindDemo) {
		return store.Run{}, fmt.Errorf("%s: %w", kindTitle(store.KindDemo), ErrNotAvailable)
	}
	if !u.toyInLibrary() {
		return store.Run{}, errors.New("the toy world is not in this library: press “Add toy world demo” in the Library first")
	}
	data, err := json.Marshal(DemoConfig{Seed: 1})
	if err != nil {
		return store.Run{}, err
	}
	r := store.Run{Kind: store.KindDemo, SubjectID: ToySubjectID, BaseModelID: ToyModelID, Config: data}
	if err := u.Runner.Submit(&r); err != nil {
		return store.Run{}, err
	}
	return r, nil
}

// demoExplanation is what the "Try the whole method" card and its
// confirmation say.
const demoExplanation = "Runs InstructBooth's whole method on the toy world in one go: DreamBooth teaches the toy model this star " +
	"(full U-Net, with prior preservation), DDPO aligns the personalised model with the toy world's reward on activity prompts, " +
	"and an evaluation compares the base, DreamBooth and InstructBooth models on held-out prompts (text fidelity and subject fidelity). " +
	"About ten minutes on two CPU cores; cancel and resume whenever you like."
