// Package demo runs InstructBooth's whole method on the toy world, end to
// end, on any machine: DreamBooth personalisation of the world's novel
// subject (with prior preservation), DDPO alignment of the personalised
// model with the toy alignment reward on activity prompts, and an
// evaluation of the base, DreamBooth-only and InstructBooth models on
// held-out prompts with the toy text-fidelity and subject-fidelity
// scores. It uses the same packages as real Stable Diffusion runs
// (training/dreambooth, training/ddpo, training/evaluate); only the model
// and the scores are the toy world's.
//
// Every stage writes its result into the output folder and is skipped
// when that result is already there, and the DreamBooth and DDPO stages
// checkpoint as they go, so an interrupted demo resumes where it stopped.
package demo

import (
	"context"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/data"
	"github.com/instructbooth/instructbooth/training/ddpo"
	"github.com/instructbooth/instructbooth/training/dreambooth"
	"github.com/instructbooth/instructbooth/training/evaluate"
	"github.com/instructbooth/instructbooth/training/toyworld"
)

// Options configure Run. DefaultOptions and QuickOptions fill them.
type Options struct {
	Out  string // output folder (results, models, work files)
	Base string // the toy base model's diffusers folder
	Seed uint64

	Photos int // DreamBooth input photos of the subject

	// DreamBooth (full U-Net fine-tuning with prior preservation).
	DBSteps     int
	DBLR        float32
	ClassImages int
	ClassSteps  int

	// DDPO on "a sks star <activity>" and "a star <activity>".
	Activities                    []string
	Epochs, Samples, Batch, Steps int
	LR                            float32
	Guidance                      float32
	TimestepFraction, ClipRange   float64
	// EarlyFraction limits the trained steps to the first share of each
	// trajectory (ddpo.Config.EarlyFraction; 0: all).
	EarlyFraction float64
	Rank          int
	// PerPrompt samples of each drawn prompt per epoch: rewards are
	// standardised within the prompt's group (ddpo.Config.SamplesPerPrompt).
	PerPrompt int
	// PooledStd scales the centred rewards by the batch's pooled
	// within-prompt standard deviation (ddpo.Config.PooledStd).
	PooledStd bool
	// StepBaseline subtracts a per-step baseline from the reward of the
	// x_0 predicted at each step (ddpo.Config.StepBaseline).
	StepBaseline bool
	// AccumBatches batches per AdamW step (0: one step per inner epoch);
	// InnerEpochs passes over each epoch's samples.
	AccumBatches, InnerEpochs int

	// Evaluation on held-out prompts ("a {} <activity>").
	HeldOut    []string
	EvalImages int // per prompt and model
	EvalSteps  int

	// Log receives progress lines.
	Log func(string)
	// Progress, when set, receives every stage's progress (for progress
	// bars): Stage is StageClassImages, StageDreamBooth, StageSampling,
	// StageTraining or StageEvaluate.
	Progress func(Progress)
}

// Progress is one report of a stage's advance.
type Progress struct {
	Stage       string
	Step, Total int                // within the stage (DDPO: within the epoch's phase)
	Epoch       int                // DDPO stages: 1-based epoch
	Metrics     map[string]float64 // e.g. "loss" (DreamBooth), "reward" (DDPO, at an epoch's end)
}

// Stages of Progress.
const (
	StageClassImages = "class images"
	StageDreamBooth  = "dreambooth"
	StageSampling    = "ddpo sampling"
	StageTraining    = "ddpo training"
	StageEvaluate    = "evaluate"
)

func (o Options) progress(p Progress) {
	if o.Progress != nil {
		o.Progress(p)
	}
}

// TrainActivities are the DDPO training activities: each of the world's
// contexts alone, and the pairs of an accessory or action with a
// background that HeldOutActivities leaves out (so the held-out pairs are
// new combinations of trained contexts).
var TrainActivities = []string{
	"on the grass", "floating on the water", "at night", "in the desert",
	"wearing a hat", "with popcorn in it", "jumping", "lying down", "playing with a ball",
	"wearing a hat floating on the water", "wearing a hat in the desert",
	"with popcorn in it on the grass", "with popcorn in it at night", "with popcorn in it in the desert",
	"jumping on the grass", "jumping floating on the water",
	"lying down on the grass", "lying down at night",
	"playing with a ball floating on the water", "playing with a ball at night", "playing with a ball in the desert",
}

// HeldOutActivities are the evaluation activities: pairs of contexts that
// no training prompt combines.
var HeldOutActivities = []string{
	"wearing a hat on the grass", "jumping at night", "lying down in the desert",
	"with popcorn in it floating on the water", "playing with a ball on the grass", "wearing a hat at night",
	"jumping in the desert", "lying down floating on the water",
}

// DefaultOptions are the demo's settings (README figures): under ten
// minutes on two CPU cores through lavapipe. Its DDPO stage is the first
// 5 epochs of FullOptions' 45: each update averages 64 samples (the
// measured gradient needs hundreds for its direction to be signal), the
// trained steps leave out the last two, whose noise dominates the
// gradient, and each step's advantage has the per-step baseline.
func DefaultOptions(out, base string) Options {
	return Options{
		Out: out, Base: base, Seed: 1, Photos: 5,
		DBSteps: 200, DBLR: 3.5e-4, ClassImages: 12, ClassSteps: 20,
		Activities: TrainActivities, Epochs: 5, Samples: 64, Batch: 8, Steps: 10,
		LR: 4e-3, Guidance: 5, TimestepFraction: 0.5, EarlyFraction: 0.8, ClipRange: 0.2, Rank: 4, AccumBatches: 0,
		PerPrompt: 4, PooledStd: true, StepBaseline: true,
		HeldOut: HeldOutActivities, EvalImages: 4, EvalSteps: 15,
	}
}

// FullOptions run DDPO long enough to raise the reward (README figures):
// 45 epochs of DefaultOptions' DDPO settings, and 8 evaluation images per
// prompt. About an hour on two CPU cores.
func FullOptions(out, base string) Options {
	o := DefaultOptions(out, base)
	o.Epochs, o.EvalImages = 45, 8
	return o
}

// QuickOptions run every stage with a few steps (tests, smoke runs).
func QuickOptions(out, base string) Options {
	o := DefaultOptions(out, base)
	o.Photos, o.DBSteps, o.ClassImages, o.ClassSteps = 3, 4, 2, 4
	o.Epochs, o.Samples, o.Batch, o.Steps = 1, 4, 4, 4
	o.HeldOut, o.EvalImages, o.EvalSteps = o.HeldOut[:2], 1, 4
	return o
}

// Run names of the evaluation.
const (
	RunBase          = "base"
	RunDreamBooth    = "dreambooth"
	RunInstructBooth = "instructbooth"
)

// Folder and file names under Options.Out.
const (
	DirSubject    = "subject"          // the DreamBooth input photos
	DirDreamBooth = "dreambooth-model" // base model with the personalised U-Net
	FileAlignLoRA = "instructbooth-lora.safetensors"
	DirWork       = "work" // checkpoints and class images
	DirResults    = "results"
)

// Result is what Run measured.
type Result struct {
	Report *evaluate.Report
	Files  []string // the results written
	// Rewards are the DDPO epochs' mean rewards.
	Rewards []float64
	Elapsed time.Duration
}

func (o Options) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(fmt.Sprintf(format, args...))
	}
}

// Run runs (or resumes) the demo on e.
func Run(ctx context.Context, e *gpu.Engine, o Options) (*Result, error) {
	start := time.Now()
	if o.Out == "" || o.Base == "" {
		return nil, fmt.Errorf("demo: an output folder and a base model are needed")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	subj := toyworld.TheSubject()
	photos, err := writePhotos(filepath.Join(o.Out, DirSubject), subj, o.Seed, o.Photos)
	if err != nil {
		return nil, err
	}
	o.logf("subject: %d photos of %q in %s", len(photos), subj.InstancePrompt(), filepath.Join(o.Out, DirSubject))
	dbDir := filepath.Join(o.Out, DirDreamBooth)
	if err := personalize(ctx, e, o, dbDir); err != nil {
		return nil, err
	}
	res := &Result{}
	loraPath := filepath.Join(o.Out, FileAlignLoRA)
	if res.Rewards, err = align(ctx, e, o, dbDir, loraPath); err != nil {
		return nil, err
	}
	if res.Report, res.Files, err = evaluateRuns(ctx, e, o, dbDir, loraPath, photos); err != nil {
		return nil, err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// writePhotos renders the subject's photos into dir (once) and returns
// them.
func writePhotos(dir string, s toyworld.Subject, seed uint64, n int) ([]image.Image, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out []image.Image
	for i, sc := range s.Photos(seed, n) {
		img, err := toyworld.Render(sc, toyworld.Grid)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, fmt.Sprintf("photo-%d.png", i+1))
		if _, err := os.Stat(p); err != nil {
			if err := generate.WritePNG(p, img, nil); err != nil {
				return nil, err
			}
		}
		out = append(out, img)
	}
	return out, nil
}

// personalize runs DreamBooth (full U-Net, prior preservation) unless
// dbDir holds its result, which it writes as a complete model folder: the
// base model's files with the trained U-Net.
func personalize(ctx context.Context, e *gpu.Engine, o Options, dbDir string) error {
	if _, err := os.Stat(filepath.Join(dbDir, "unet", "diffusion_pytorch_model.safetensors")); err == nil {
		o.logf("dreambooth: done before (%s)", dbDir)
		return nil
	}
	pl, err := sd.Load(e, o.Base, sd.LoadOptions{})
	if err != nil {
		return fmt.Errorf("demo: base model: %w", err)
	}
	defer pl.Release()
	res := imageSize(pl)
	set, skipped, err := data.LoadFolder(filepath.Join(o.Out, DirSubject), res)
	if err != nil {
		return err
	}
	if len(skipped) > 0 {
		return fmt.Errorf("demo: unreadable subject photo %s", skipped[0])
	}
	hash, err := dreambooth.BaseModelHash(pl.Source)
	if err != nil {
		return err
	}
	cfg := dreambooth.Config{
		Mode: dreambooth.ModeFull, Identifier: toyworld.TheSubject().Token(), ClassNoun: "star",
		LR: o.DBLR, Steps: o.DBSteps, Resolution: res, Seed: o.Seed,
		ClassImages: o.ClassImages, ClassSteps: o.ClassSteps, CheckpointEvery: max(1, o.DBSteps/4),
		NoGradientCheckpointing: true, MemoryBudget: 1 << 30,
	}
	var last time.Time
	status := func(what, stage string) func(training.Status) {
		return func(s training.Status) {
			o.progress(Progress{Stage: stage, Step: s.Step, Total: s.Total, Metrics: s.Metrics})
			if time.Since(last) >= 2*time.Second || s.Step == s.Total {
				o.logf("%s: %s", what, s)
				last = time.Now()
			}
		}
	}
	job := dreambooth.Job{
		Config: cfg, Pipeline: pl, ModelName: "toyworld", BaseModelHash: hash, Subject: set,
		WorkDir: filepath.Join(o.Out, DirWork, "dreambooth"), ClassCache: filepath.Join(o.Out, DirWork, "class-images"),
		Progress: status("dreambooth", StageDreamBooth), ClassProgress: status("class images", StageClassImages),
		Log: func(s string) { o.logf("dreambooth: %s", s) },
	}
	o.logf("dreambooth: %d steps on %q with %d class images of %q, lr %g", cfg.Steps, cfg.InstancePrompt(), cfg.ClassImages, cfg.ClassPrompt(), cfg.LR)
	if _, err := dreambooth.Train(ctx, job); err != nil {
		return err
	}
	tmp := dbDir + ".tmp"
	os.RemoveAll(tmp)
	if err := copyModel(o.Base, tmp); err != nil {
		return err
	}
	meta := map[string]string{"instructbooth.stage": "dreambooth", "instructbooth.prompt": cfg.InstancePrompt()}
	if err := sd.SaveUNet(filepath.Join(tmp, "unet"), pl.UNet, false, meta); err != nil {
		return err
	}
	os.RemoveAll(dbDir)
	if err := os.Rename(tmp, dbDir); err != nil {
		return err
	}
	o.logf("dreambooth: model written to %s", dbDir)
	return nil
}

// copyModel copies a diffusers folder's files (not its train/ folder).
func copyModel(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			if rel == "train" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// align runs DDPO on the personalised model unless loraPath exists, and
// returns the epochs' mean rewards.
func align(ctx context.Context, e *gpu.Engine, o Options, dbDir, loraPath string) ([]float64, error) {
	if _, err := os.Stat(loraPath); err == nil {
		o.logf("ddpo: done before (%s)", loraPath)
		return nil, nil
	}
	pl, err := sd.Load(e, dbDir, sd.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("demo: personalised model: %w", err)
	}
	defer pl.Release()
	id := toyworld.TheSubject().Token()
	prompts, err := ddpo.Prompts(id, "star", o.Activities)
	if err != nil {
		return nil, err
	}
	cfg := o.ddpoConfig(dbDir, prompts, imageSize(pl))
	cfg.WorkDir = filepath.Join(o.Out, DirWork, "ddpo")
	comps := generate.FromPipeline(pl, "toyworld-dreambooth")
	tr, err := ddpo.New(comps, AlignReward{}, cfg)
	if err != nil {
		return nil, err
	}
	defer tr.Release()
	if tr.ResumedFrom != "" {
		o.logf("ddpo: resuming from %s (%d of %d epochs done)", tr.ResumedFrom, tr.Epoch(), cfg.Epochs)
	}
	o.logf("ddpo: %d epochs of %d samples over %d prompts, %d DDIM steps, LoRA rank %d, lr %g, reward %s",
		cfg.Epochs, cfg.SamplesPerEpoch, len(prompts), cfg.Steps, cfg.Rank, cfg.LR, RewardName)
	var last time.Time
	err = tr.Run(ctx, func(p ddpo.Progress) {
		if p.Phase == ddpo.PhaseEpoch {
			s := p.Stats
			o.progress(Progress{Stage: StageTraining, Step: 1, Total: 1, Epoch: s.Epoch, Metrics: map[string]float64{"reward": s.RewardMean}})
			o.logf("ddpo: epoch %d/%d  reward %.3f ± %.3f  approx KL %.2g  clipped %.2f", s.Epoch, cfg.Epochs, s.RewardMean, s.RewardStd, s.ApproxKL, s.ClipFrac)
			return
		}
		stage := StageSampling
		if p.Phase == ddpo.PhaseTraining {
			stage = StageTraining
		}
		o.progress(Progress{Stage: stage, Step: p.Step, Total: p.Total, Epoch: p.Epoch})
		if time.Since(last) >= 2*time.Second {
			o.logf("ddpo: epoch %d %s: %s", p.Epoch, p.Phase, p.Status)
			last = time.Now()
		}
	})
	if err != nil {
		return nil, err
	}
	var rewards []float64
	for _, s := range tr.History() {
		rewards = append(rewards, s.RewardMean)
	}
	meta := lora.Meta{Identifier: id, ClassNoun: "star", Description: "DDPO alignment of the toy world's personalised model for the toy alignment reward"}.Map()
	if err := tr.Save(loraPath, lora.Kohya, meta); err != nil {
		return nil, err
	}
	o.logf("ddpo: LoRA written to %s", loraPath)
	return rewards, nil
}

// ddpoConfig is the DDPO configuration of the demo's alignment of the
// personalised model in dbDir at the given image size (no work folder).
func (o Options) ddpoConfig(dbDir string, prompts []string, size int) ddpo.Config {
	return ddpo.Config{
		Model: dbDir, Prompts: prompts, Epochs: o.Epochs, SamplesPerEpoch: o.Samples, BatchSize: o.Batch,
		MicroBatch: o.Batch, Steps: o.Steps, Guidance: o.Guidance, Eta: 1, TimestepFraction: o.TimestepFraction, EarlyFraction: o.EarlyFraction,
		Width: size, Height: size, Rank: o.Rank, LR: o.LR, ClipRange: o.ClipRange, Seed: o.Seed,
		AccumBatches: o.AccumBatches, InnerEpochs: o.InnerEpochs,
		SamplesPerPrompt: o.PerPrompt, PooledStd: o.PooledStd, StepBaseline: o.StepBaseline, StatBuffer: 32, NoGradCheckpointing: true,
	}
}

// WithTrainer personalises the subject (or reuses the DreamBooth model in
// o.Out) and calls f with a fresh DDPO trainer on it with the demo's DDPO
// settings and no work folder, for measurements
// (ddpo.Trainer.MeasureGradient, MeasureInitialNoise) rather than
// training.
func WithTrainer(ctx context.Context, e *gpu.Engine, o Options, f func(*ddpo.Trainer) error) error {
	if _, err := writePhotos(filepath.Join(o.Out, DirSubject), toyworld.TheSubject(), o.Seed, o.Photos); err != nil {
		return err
	}
	dbDir := filepath.Join(o.Out, DirDreamBooth)
	if err := personalize(ctx, e, o, dbDir); err != nil {
		return err
	}
	pl, err := sd.Load(e, dbDir, sd.LoadOptions{})
	if err != nil {
		return fmt.Errorf("demo: personalised model: %w", err)
	}
	defer pl.Release()
	prompts, err := ddpo.Prompts(toyworld.TheSubject().Token(), "star", o.Activities)
	if err != nil {
		return err
	}
	tr, err := ddpo.New(generate.FromPipeline(pl, "toyworld-dreambooth"), AlignReward{}, o.ddpoConfig(dbDir, prompts, imageSize(pl)))
	if err != nil {
		return err
	}
	defer tr.Release()
	return f(tr)
}

// evaluateRuns draws EvalImages images per held-out prompt from each of
// the three models with the same seeds, scores them, and writes the
// report into Out/results.
func evaluateRuns(ctx context.Context, e *gpu.Engine, o Options, dbDir, loraPath string, refs []image.Image) (*evaluate.Report, []string, error) {
	var prompts []evaluate.Prompt
	for _, a := range o.HeldOut {
		prompts = append(prompts, evaluate.Prompt{Template: "a {} " + a, Category: "activity"})
	}
	var samples []evaluate.Sample
	resDir := filepath.Join(o.Out, DirResults)
	var last time.Time
	progress := func(p evaluate.Progress) {
		o.progress(Progress{Stage: StageEvaluate, Step: p.Done, Total: p.Total})
		if time.Since(last) >= 2*time.Second || p.Done == p.Total {
			o.logf("evaluate: %s", p)
			last = time.Now()
		}
	}
	for _, run := range []struct{ name, model string }{{RunBase, o.Base}, {RunDreamBooth, dbDir}, {RunInstructBooth, dbDir}} {
		pl, err := sd.Load(e, run.model, sd.LoadOptions{})
		if err != nil {
			return nil, nil, fmt.Errorf("demo: %s model: %w", run.name, err)
		}
		r := evaluate.Run{Name: run.name}
		if run.name == RunInstructBooth {
			r.Setup = func() (func(), error) {
				t := lora.Targets{UNet: pl.UNet.W}
				l, err := lora.Load(loraPath, t)
				if err != nil {
					return nil, err
				}
				set := lora.Set{UNet: l.UNet}
				set.Attach(t)
				return func() { lora.Detach(t); l.Release() }, nil
			}
		}
		s, err := evaluate.GenerateImages(ctx, evaluate.GenerateConfig{
			Components: generate.FromPipeline(pl, "toyworld"),
			Runs:       []evaluate.Run{r}, Prompts: prompts, Identifier: toyworld.TheSubject().Token(), Class: "star",
			ImagesPerPrompt: o.EvalImages, OutDir: resDir,
			Params: generate.Params{Steps: o.EvalSteps, Guidance: o.Guidance, Seed: o.Seed * 1000, Width: imageSize(pl), Height: imageSize(pl), Sampler: "ddim"},
		}, progress)
		pl.Release()
		if err != nil {
			return nil, nil, err
		}
		samples = append(samples, s...)
	}
	report, err := evaluate.Score(ctx, samples, refs, []evaluate.MetricSource{
		evaluate.Static(AlignScorer{}), evaluate.Static(FidelityScorer{}),
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	files, err := report.WriteFiles(resDir)
	if err != nil {
		return nil, nil, err
	}
	return report, files, nil
}

// Summary is the demo's table as text: one line per model with the mean
// (and standard error) of both scores.
func Summary(r *evaluate.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-14s %-22s %-22s\n", "model", "text fidelity", "subject fidelity")
	for _, run := range r.Runs {
		a, f := r.Summary(run, AlignMetric), r.Summary(run, FidelityMetric)
		fmt.Fprintf(&b, "%-14s %.3f ± %.3f          %.3f ± %.3f\n", run, a.Mean, a.StdErr, f.Mean, f.StdErr)
	}
	// Same seeds for every model: the paired differences are the sharper test.
	for _, p := range [][2]string{{RunDreamBooth, RunBase}, {RunInstructBooth, RunDreamBooth}} {
		a, f := r.Paired(p[0], p[1], AlignMetric), r.Paired(p[0], p[1], FidelityMetric)
		if a.N > 0 {
			fmt.Fprintf(&b, "%-14s %+.3f ± %.3f         %+.3f ± %.3f   (paired, same seeds)\n", p[0]+" − "+p[1], a.Mean, a.StdErr, f.Mean, f.StdErr)
		}
	}
	return b.String()
}

// imageSize is the side the demo draws and trains at: the world's 32
// pixels, or the model's smallest size if that is larger.
func imageSize(pl *sd.Pipeline) int {
	return max(toyworld.Grid, generate.FromPipeline(pl, "").SizeMultiple())
}
