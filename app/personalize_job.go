package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/data"
	"github.com/instructbooth/instructbooth/training/dreambooth"
)

// Files and folders of a run's work folder (RunDir).
const (
	RunLogFile       = "log.txt"     // notes of the run: skipped photos, resumes, checkpoints
	runCheckpointDir = "checkpoints" // the trainer's own checkpoints (weights + optimizer state)
	runValidationDir = "validation"  // validation images, step-NNNNNN.png
	classImagesDir   = "class-images"
)

// RunDir is the work folder of a run: <data dir>/runs/<run id>, beside the
// database file. Trainers keep their resumable state there; evaluations
// write their tables and charts there.
func RunDir(db *store.DB, runID string) string {
	return filepath.Join(filepath.Dir(db.Path()), "runs", runID)
}

// ClassImageCache is the root of the class-image caches shared by every
// personalize run: <data dir>/class-images.
func ClassImageCache(db *store.DB) string {
	return filepath.Join(filepath.Dir(db.Path()), classImagesDir)
}

// runLog appends time-stamped lines to a run's log file. Writing is best
// effort: a log that cannot be written never stops a run.
type runLog struct {
	mu sync.Mutex
	f  *os.File
}

func openRunLog(dir string) *runLog {
	f, _ := os.OpenFile(filepath.Join(dir, RunLogFile), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	return &runLog{f: f}
}

func (l *runLog) Printf(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		fmt.Fprintf(l.f, "%s %s\n", time.Now().Format("2006-01-02 15:04:05"), fmt.Sprintf(format, a...))
	}
}

func (l *runLog) Close() {
	if l.f != nil {
		l.f.Close()
	}
}

// Personalize modes (PersonalizeConfig.Mode).
const (
	ModeLoRA = string(dreambooth.ModeLoRA) // adapters on the U-Net's attention layers (default)
	ModeFull = string(dreambooth.ModeFull) // every U-Net weight; needs the memory for it
)

// personalizeJob trains DreamBooth (training/dreambooth) on a subject's
// photos. The trainer keeps its checkpoints (weights and optimizer state)
// in RunDir/checkpoints and resumes from the newest one, so a resumed run
// computes exactly what the uninterrupted run computes. The LoRA is stored
// as a store checkpoint (kohya safetensors with the subject's metadata)
// every CheckpointEvery steps, on interruption and at the end, so Generate,
// Export LoRA, Compare and Align can use it.
type personalizeJob struct {
	env  JobEnv
	cfg  PersonalizeConfig
	subj store.Subject
	tc   dreambooth.Config // without Resolution, which needs the base model
	note string            // how the form's prompts map onto the trainer's
}

// NewPersonalizeJob is the Factory of personalize runs (Config:
// PersonalizeConfig). It checks the configuration against the subject and
// what the trainer supports before any GPU work.
func NewPersonalizeJob(env JobEnv) (Job, error) {
	var cfg PersonalizeConfig
	if err := json.Unmarshal(env.Run.Config, &cfg); err != nil {
		return nil, fmt.Errorf("personalize: configuration: %w", err)
	}
	subj, err := env.DB.Subject(env.Run.SubjectID)
	if err != nil {
		return nil, fmt.Errorf("personalize: subject: %w", err)
	}
	if len(subj.Images) == 0 {
		return nil, fmt.Errorf("personalize: %s has no photos", subj.Name)
	}
	tc, note, err := trainerConfig(cfg, subj)
	if err != nil {
		return nil, err
	}
	return &personalizeJob{env: env, cfg: cfg, subj: subj, tc: tc, note: note}, nil
}

// trainerConfig maps a PersonalizeConfig and its subject onto the
// trainer's configuration. The trainer's prompts are "a [identifier]
// [description] [class noun]" and "a [class noun]": the words of the
// instance prompt between the subject's identifier and its class noun
// become the description, and words before the identifier ("a photo of")
// are not used; note says so when the prompts differ from the trainer's.
func trainerConfig(cfg PersonalizeConfig, s store.Subject) (dreambooth.Config, string, error) {
	bad := func(f string, a ...any) (dreambooth.Config, string, error) {
		return dreambooth.Config{}, "", fmt.Errorf("personalize: "+f, a...)
	}
	class := strings.Join(strings.Fields(s.Class), " ")
	if class == "" {
		return bad("%s has no class noun (dog, cat, toy…): set it on the subject's page", s.Name)
	}
	id := strings.TrimSpace(s.Identifier)
	if id == "" {
		id = dreambooth.DefaultIdentifier
	}
	var desc string
	if p := strings.Fields(cfg.InstancePrompt); len(p) > 0 {
		at := -1
		for i, w := range p {
			if w == id {
				at = i
				break
			}
		}
		cw := strings.Fields(class)
		rest := p[at+1:]
		if at < 0 || len(rest) < len(cw) || strings.Join(rest[len(rest)-len(cw):], " ") != class {
			return bad("the instance prompt %q must name the subject as %q followed by its class noun %q (e.g. \"a photo of %s %s\")",
				cfg.InstancePrompt, id, class, id, class)
		}
		desc = strings.Join(rest[:len(rest)-len(cw)], " ")
	}
	switch {
	case cfg.TrainTextEncoder:
		return bad("training the text encoder is not supported by the DreamBooth trainer yet (it trains the U-Net); turn off \"Train text encoder\"")
	case cfg.BatchSize > 1:
		return bad("batch size %d: the DreamBooth trainer takes one subject image per step (plus one class image with prior preservation)", cfg.BatchSize)
	case cfg.Mode != "" && cfg.Mode != ModeLoRA && cfg.Mode != ModeFull:
		return bad("mode %q: want %s or %s", cfg.Mode, ModeLoRA, ModeFull)
	}
	tc := dreambooth.Config{
		Mode: dreambooth.Mode(cfg.Mode), Identifier: id, ClassNoun: class, Description: desc,
		Rank: cfg.Rank, Alpha: float32(cfg.Alpha), LR: float32(cfg.LearningRate), Steps: cfg.Steps, Seed: cfg.Seed,
		NoPrior: !cfg.PriorPreservation, PriorWeight: float32(cfg.PriorWeight), ClassImages: cfg.ClassImages,
		CheckpointEvery: cfg.CheckpointEvery, ValidationSeed: cfg.Seed,
	}
	if tc.NoPrior {
		tc.PriorWeight = 0
	}
	if cfg.Steps < 1 {
		return bad("%d steps: want at least 1", cfg.Steps)
	}
	tc = tc.WithDefaults()
	tc.ValidateEvery = cfg.ValidateEvery
	if tc.ValidateEvery == 0 {
		tc.ValidateEvery = tc.CheckpointEvery
	}
	if tc.ValidateEvery < 0 {
		tc.ValidateEvery = 0
	}
	check := tc
	check.Resolution = max(cfg.Resolution, 64)
	if err := check.Validate(); err != nil {
		return dreambooth.Config{}, "", fmt.Errorf("personalize: %w", err)
	}
	var notes []string
	if want := tc.InstancePrompt(); cfg.InstancePrompt != "" && strings.Join(strings.Fields(cfg.InstancePrompt), " ") != want {
		notes = append(notes, fmt.Sprintf("the trainer's instance prompt is %q (from %q)", want, cfg.InstancePrompt))
	}
	if want := tc.ClassPrompt(); !tc.NoPrior && cfg.ClassPrompt != "" && strings.Join(strings.Fields(cfg.ClassPrompt), " ") != want {
		notes = append(notes, fmt.Sprintf("the trainer's class prompt is %q (from %q)", want, cfg.ClassPrompt))
	}
	return tc, strings.Join(notes, "; "), nil
}

func (j *personalizeJob) Run(ctx context.Context, report func(Progress)) (err error) {
	env, run := j.env, j.env.Run
	dir := RunDir(env.DB, run.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("personalize: work folder: %w", err)
	}
	log := openRunLog(dir)
	defer log.Close()
	defer func() {
		if err != nil {
			log.Printf("stopped: %v", err)
		}
	}()
	ckptDir := filepath.Join(dir, runCheckpointDir)
	if !env.Resumed {
		// A new run starts afresh whatever an earlier run of this id left.
		if err := os.RemoveAll(ckptDir); err != nil {
			return fmt.Errorf("personalize: %w", err)
		}
		log.Printf("personalize %s: %d photos, %d steps", j.subj.Name, len(j.subj.Images), j.tc.Steps)
	} else {
		log.Printf("resuming")
	}
	if j.note != "" {
		log.Printf("note: %s", j.note)
	}

	bm, err := env.DB.BaseModel(run.BaseModelID)
	if err != nil {
		if run.BaseModelID == "" {
			return ErrNoBaseModel
		}
		return err
	}
	tc := j.tc
	tc.Resolution = j.cfg.Resolution
	if tc.Resolution == 0 {
		tc.Resolution = NativeSize(bm.Path)
	}
	tc.MemoryBudget = env.MemoryBudget
	if err := tc.Validate(); err != nil {
		return fmt.Errorf("personalize: %w", err)
	}
	subject, err := j.loadSubject(tc.Resolution, log)
	if err != nil {
		return err
	}

	var pl *sd.Pipeline
	if tc.Mode == dreambooth.ModeFull {
		// Full fine-tuning trains f32 weights in place: a private copy of
		// the model, loaded after the shared (binary16) one is unloaded.
		env.Models.Release()
		if pl, err = sd.Load(env.Engine, bm.Path, sd.LoadOptions{}); err != nil {
			return fmt.Errorf("base model %q: %w", bm.Name, err)
		}
		defer pl.Release()
	} else if pl, bm, err = env.Models.Base(run.BaseModelID); err != nil {
		return err
	}
	hash := bm.Hash
	if hash == "" || pl.Source.Layout != sd.LayoutSingleFile {
		if hash, err = dreambooth.BaseModelHash(pl.Source); err != nil {
			return err
		}
	}
	modelName := bm.Name
	if modelName == "" {
		modelName = filepath.Base(bm.Path)
	}
	meta := lora.Meta{BaseModelHash: hash, Identifier: tc.Identifier, ClassNoun: tc.ClassNoun, Description: tc.Description}

	// The trainer resumes from its newest checkpoint; progress starts there.
	_, start, _ := training.LatestCheckpoint(ckptDir)
	if env.Resumed && start == 0 && env.Checkpoint != nil {
		log.Printf("the work folder has no trainer checkpoint (only the stored LoRA of step %d, without optimizer state): starting again from step 0", env.Checkpoint.Step)
	}
	report(Progress{Step: start, Total: tc.Steps})

	lastClass, drawing := time.Time{}, false
	job := dreambooth.Job{
		Config: tc, Pipeline: pl, ModelName: modelName, BaseModelHash: hash, Subject: subject,
		WorkDir: dir, ClassCache: ClassImageCache(env.DB),
		Log: func(s string) { log.Printf("%s", s) },
		ClassProgress: func(s training.Status) {
			if s.Step == s.Total || time.Since(lastClass) > 30*time.Second {
				lastClass = time.Now()
				log.Printf("class images: %s", s)
			}
			// Drawing class images is a phase of its own (minutes on a
			// fresh cache); a full cache reports nothing.
			if s.Step < s.Total || drawing {
				drawing = true
				report(Progress{Step: s.Step, Total: s.Total, Phase: "Class images"})
			}
		},
		Progress: func(s training.Status) {
			report(Progress{Step: s.Step, Total: s.Total, Metrics: map[string]float64{"loss": s.Metrics["loss"]}})
			// Periodic checkpoints for Generate and Export while training
			// goes on, from the adapters being trained (the final one is
			// stored from the result).
			if tc.Mode == dreambooth.ModeLoRA && s.Step%tc.CheckpointEvery == 0 && s.Step < s.Total {
				if att := pl.UNet.W.Attached(); len(att) > 0 {
					m := meta
					m.Steps = s.Step
					if err := j.storeLoRA(lora.Set{UNet: att[len(att)-1]}, m, s.Step); err != nil {
						log.Printf("checkpoint of step %d not stored: %v", s.Step, err)
					}
				}
			}
		},
		Validation: func(step int, imgs []generate.Image) {
			if len(imgs) == 0 {
				return
			}
			vd := filepath.Join(dir, runValidationDir)
			if err := os.MkdirAll(vd, 0o755); err == nil {
				for i, im := range imgs {
					p := filepath.Join(vd, fmt.Sprintf("step-%06d-%d.png", step, i))
					if err := generate.WritePNG(p, im.RGB, generate.Metadata(im.Params, modelName)); err != nil {
						log.Printf("validation image: %v", err)
					}
				}
			}
			report(Progress{Step: step, Total: tc.Steps, Preview: imgs[0].RGB})
		},
	}
	res, err := dreambooth.Train(ctx, job)
	if err != nil {
		var ie *dreambooth.InterruptedError
		if errors.As(err, &ie) && tc.Mode == dreambooth.ModeLoRA && ie.Step > 0 && ie.Checkpoint != "" {
			m := meta
			m.Steps = ie.Step
			if serr := j.storeTrainerCheckpoint(pl, tc, ie.Checkpoint, m, ie.Step); serr != nil {
				log.Printf("checkpoint of step %d not stored: %v", ie.Step, serr)
			}
		}
		return err
	}
	if n := len(res.Losses); n > 0 {
		log.Printf("done: %d steps, final loss %.4f", res.Steps, res.Losses[n-1])
	}
	if res.LoRA != nil {
		defer res.LoRA.Release()
		return j.storeLoRA(*res.LoRA, res.Meta, res.Steps)
	}
	return j.storeFull(pl, res.Meta, res.Steps, log)
}

// loadSubject decodes the subject's photos from the store and crops them
// to the training resolution. Photos that cannot be used are written to
// the run's log with the reason; none usable is an error listing them.
func (j *personalizeJob) loadSubject(res int, log *runLog) (*data.Set, error) {
	set := &data.Set{Res: res}
	var why []string
	for _, ref := range j.subj.Images {
		reason := ""
		b, err := j.env.DB.SubjectImage(j.subj.ID, ref.Hash)
		if err != nil {
			reason = err.Error()
		} else if img, format, err := data.DecodeBytes(ref.Name, b); err != nil {
			var de *data.DecodeError
			if reason = err.Error(); errors.As(err, &de) {
				reason = de.Reason
			}
		} else if w, h := img.Bounds().Dx(), img.Bounds().Dy(); min(w, h) < (res+1)/2 {
			reason = fmt.Sprintf("%dx%d is smaller than half the training resolution (%d px on the short side)", w, h, (res+1)/2)
		} else {
			set.Images = append(set.Images, data.Image{Path: ref.Name, SHA256: ref.Hash, Format: format, Width: w, Height: h, Crop: data.Prepare(img, res)})
			continue
		}
		why = append(why, ref.Name+": "+reason)
		log.Printf("photo skipped: %s: %s", ref.Name, reason)
	}
	if len(set.Images) == 0 {
		return nil, fmt.Errorf("personalize: none of %s's photos can be used (%s)", j.subj.Name, strings.Join(why, "; "))
	}
	log.Printf("%d of %d photos used at %d px", len(set.Images), len(j.subj.Images), res)
	return set, nil
}

// storeLoRA stores the adapters of s as the run's LoRA checkpoint at step
// (kohya layout, with meta), replacing a checkpoint of the same step.
func (j *personalizeJob) storeLoRA(s lora.Set, meta lora.Meta, step int) error {
	return storeRunLoRA(j.env, s, meta, step)
}

// storeRunLoRA stores s (kohya safetensors with meta) as env's run's LoRA
// checkpoint at step, replacing a checkpoint of that run at the same step.
func storeRunLoRA(env JobEnv, s lora.Set, meta lora.Meta, step int) error {
	data, err := encodeLoRA(RunDir(env.DB, env.Run.ID), s, meta)
	if err != nil {
		return err
	}
	c := store.Checkpoint{RunID: env.Run.ID, Step: step, Kind: store.CheckpointLoRA}
	if old, err := env.DB.Checkpoints(env.Run.ID); err == nil {
		for _, o := range old {
			if o.Step == step {
				c.ID = o.ID
			}
		}
	}
	return env.DB.PutCheckpoint(&c, data)
}

// encodeLoRA returns s as kohya safetensors bytes with meta (written
// through a temporary file in dir, as lora.Save writes files).
func encodeLoRA(dir string, s lora.Set, meta lora.Meta) ([]byte, error) {
	f, err := os.CreateTemp(dir, ".lora-*.safetensors")
	if err != nil {
		return nil, err
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	if err := lora.Save(path, s, lora.Kohya, meta.Map()); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// storeTrainerCheckpoint stores the LoRA of one of the trainer's own
// checkpoint files (as written at an interruption): fresh adapters on the
// trained modules, filled from the file.
func (j *personalizeJob) storeTrainerCheckpoint(pl *sd.Pipeline, tc dreambooth.Config, path string, meta lora.Meta, step int) error {
	a, err := lora.New(pl.UNet.W, dreambooth.TargetModules(pl.UNet.W, tc), tc.Rank, tc.Alpha, int64(tc.Seed))
	if err != nil {
		return err
	}
	s := lora.Set{UNet: a}
	defer s.Release()
	if _, err := training.LoadCheckpoint(path, s.Params(), nil, nil); err != nil {
		return err
	}
	return j.storeLoRA(s, meta, step)
}

// storeFull writes a full fine-tune as a single-file checkpoint (f32)
// under the store's checkpoint folder and records it.
func (j *personalizeJob) storeFull(pl *sd.Pipeline, meta lora.Meta, step int, log *runLog) error {
	dir := j.env.DB.CheckpointDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-step%d.safetensors", j.env.Run.ID, step))
	if err := sd.SaveSingleFile(path, pl, false, meta.Map()); err != nil {
		return err
	}
	hash, err := fileHash(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	log.Printf("full fine-tune saved as %s", path)
	c := store.Checkpoint{RunID: j.env.Run.ID, Step: step, Kind: store.CheckpointFull, Path: path, Hash: hash, Size: st.Size()}
	return j.env.DB.PutCheckpoint(&c, nil)
}
