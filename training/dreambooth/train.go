package dreambooth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/data"
)

// Stream purposes of a training step.
const (
	purposeSubject   = 1 // subject image index and flip
	purposeClass     = 2 // class image index and flip
	purposeTimestep  = 3 // DDPM timesteps
	purposeNoise     = 4 // eps, the regression target
	purposePosterior = 5 // the VAE posterior sample
)

// Job is one DreamBooth run: the model, the subject and where state lives.
type Job struct {
	Config Config
	// Pipeline is the base model (tokenizer, text encoder, U-Net, VAE,
	// schedule, all on one engine). In full mode its U-Net weights are
	// trained in place and must be f32 (not LoadOptions.F16Weights); in
	// LoRA mode the base stays untouched and may be packed.
	Pipeline      *sd.Pipeline
	ModelName     string // for image metadata
	BaseModelHash string // see BaseModelHash; keys the class-image cache and the checkpoints
	Subject       *data.Set
	// WorkDir holds the run's checkpoints (WorkDir/checkpoints); a run
	// finding checkpoints there resumes from the newest.
	WorkDir string
	// ClassCache is the root of the class-image caches (ClassCacheDir);
	// WorkDir/class-images when "".
	ClassCache string

	// Progress receives a status after every step, with metrics "loss"
	// (this step's) and "avg" (mean of the last 20 steps).
	Progress func(training.Status)
	// ClassProgress receives the class-image generation's progress.
	ClassProgress func(training.Status)
	// Validation receives the validation images (Config.ValidateEvery).
	Validation func(step int, images []generate.Image)
	// Log receives one-line notes (resume, checkpoints, skipped files).
	Log func(string)
}

// Result is what a run produced.
type Result struct {
	Steps  int       // steps done; Config.Steps when the run completed
	Losses []float64 // loss of steps 1..Steps (resumed steps included)
	// LoRA holds the trained adapters in LoRA mode, detached from the
	// U-Net; the caller releases them. In full mode it is nil and the
	// pipeline's U-Net holds the trained weights.
	LoRA       *lora.Set
	Meta       lora.Meta // what to store with an exported LoRA
	Checkpoint string    // newest checkpoint written or resumed from
	ResumedAt  int       // step the run resumed from (0: fresh start)
}

// SaveLoRA writes the trained adapters to path in format f with the run's
// metadata (base model hash, identifier, class noun, description, steps,
// rank, alpha).
func (r *Result) SaveLoRA(path string, f lora.Format) error {
	if r.LoRA == nil {
		return fmt.Errorf("dreambooth: %s: this run trained the full U-Net, not a LoRA", path)
	}
	return lora.Save(path, *r.LoRA, f, r.Meta.Map())
}

// ckptState is the trainer's part of a checkpoint.
type ckptState struct {
	Fingerprint fingerprint
	Losses      []float64
}

// InterruptedError reports a run stopped by its context; the state after
// Step is in Checkpoint. It wraps the context's error.
type InterruptedError struct {
	Step       int
	Checkpoint string
	Err        error
}

func (e *InterruptedError) Error() string {
	return fmt.Sprintf("dreambooth: interrupted after step %d (checkpoint %s): %v", e.Step, e.Checkpoint, e.Err)
}

func (e *InterruptedError) Unwrap() error { return e.Err }

// TargetModules lists the U-Net layers LoRA adapts under cfg: the
// attention projections, plus feed-forward and proj_in/proj_out when
// asked, sorted.
func TargetModules(unet *nn.Weights, cfg Config) []string {
	mods := lora.AttentionModules(unet)
	for _, k := range unet.Keys() {
		p, ok := strings.CutSuffix(k, ".weight")
		if !ok || !strings.Contains(p, ".attentions.") {
			continue
		}
		if cfg.FeedForward && (strings.HasSuffix(p, ".ff.net.0.proj") || strings.HasSuffix(p, ".ff.net.2")) {
			mods = append(mods, p)
		}
		if cfg.ProjInOut && (strings.HasSuffix(p, ".proj_in") || strings.HasSuffix(p, ".proj_out")) {
			mods = append(mods, p)
		}
	}
	sort.Strings(mods)
	return mods
}

// trainer is one run's state.
type trainer struct {
	j         Job
	cfg       Config
	e         *gpu.Engine
	u         *sd.UNet
	params    []*gpu.Tensor
	opt       *gpu.AdamW
	set       *lora.Set
	cond      *gpu.Tensor // [nb, 77, D]: instance prompt, class prompt
	subj      *latentSet
	class     *latentSet
	classSet  *data.Set
	fp        fingerprint
	losses    []float64
	ckptDir   string
	lastSaved int
	lastPath  string
}

func (t *trainer) log(format string, a ...any) {
	if t.j.Log != nil {
		t.j.Log(fmt.Sprintf(format, a...))
	}
}

// Train runs (or resumes) the job. It returns the result when all
// Config.Steps steps are done; a cancelled ctx returns an
// *InterruptedError after saving a checkpoint; a non-finite loss returns
// a *training.NotFiniteError and keeps the last good checkpoint.
func Train(ctx context.Context, j Job) (res *Result, err error) {
	cfg := j.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := j.Pipeline
	if p == nil || p.Tokenizer == nil || p.Text == nil || p.UNet == nil || p.VAE == nil || p.Schedule == nil {
		return nil, fmt.Errorf("dreambooth: the pipeline needs its tokenizer, text encoder, U-Net, VAE and schedule")
	}
	if j.Subject == nil || len(j.Subject.Images) == 0 {
		return nil, fmt.Errorf("dreambooth: no subject images")
	}
	if j.Subject.Res != cfg.Resolution {
		return nil, fmt.Errorf("dreambooth: subject images are %d px, the run trains at %d px", j.Subject.Res, cfg.Resolution)
	}
	if j.WorkDir == "" {
		return nil, fmt.Errorf("dreambooth: no work folder for checkpoints")
	}
	if m := (generate.Components{UNet: p.UNet, VAE: p.VAE}).SizeMultiple(); cfg.Resolution%m != 0 {
		return nil, fmt.Errorf("dreambooth: resolution %d: this model needs a multiple of %d", cfg.Resolution, m)
	}
	t := &trainer{j: j, cfg: cfg, e: p.UNet.W.E, u: p.UNet, ckptDir: filepath.Join(j.WorkDir, "checkpoints")}
	if cfg.Mode == ModeFull {
		if err := t.checkFull(); err != nil {
			return nil, err
		}
	}

	// A checkpoint of another run is refused before any work.
	var mods []string
	if cfg.Mode == ModeLoRA {
		mods = TargetModules(t.u.W, cfg)
	}
	var subjHashes []string
	for _, im := range j.Subject.Images {
		subjHashes = append(subjHashes, im.SHA256)
	}
	t.fp = cfg.fingerprint(mods, j.BaseModelHash, subjHashes)
	if err := t.checkResumable(); err != nil {
		return nil, err
	}

	// Class images first, with the untouched base model.
	if !cfg.NoPrior {
		if err := t.prepareClass(ctx); err != nil {
			return nil, err
		}
	}
	if err := t.prepareSubject(); err != nil {
		return nil, err
	}
	if err := t.encodePrompts(); err != nil {
		return nil, err
	}
	defer t.cond.Release()

	if cfg.Mode == ModeLoRA {
		a, err := lora.New(t.u.W, mods, cfg.Rank, cfg.Alpha, int64(cfg.Seed))
		if err != nil {
			return nil, fmt.Errorf("dreambooth: %w", err)
		}
		t.set = &lora.Set{UNet: a}
		t.params = t.set.Params()
		tg := lora.Targets{UNet: t.u.W}
		t.set.Attach(tg)
		defer lora.Detach(tg)
		defer func() {
			if res == nil {
				t.set.Release()
			}
		}()
	} else {
		t.params = t.u.W.Params()
		for _, q := range t.params {
			q.SetRequiresGrad(true)
		}
		defer func() {
			gpu.ZeroGrad(t.params...)
			for _, q := range t.params {
				q.SetRequiresGrad(false)
			}
		}()
	}
	t.opt = t.e.NewAdamW(t.params, cfg.LR)
	defer t.opt.Release()
	t.opt.Beta1, t.opt.Beta2, t.opt.WeightDecay = cfg.Beta1, cfg.Beta2, cfg.WeightDecay
	if cfg.MaxGradNorm > 0 {
		t.opt.MaxGradNorm = cfg.MaxGradNorm
	}
	start, err := t.resume()
	if err != nil {
		return nil, err
	}
	prevCkpt := t.u.Checkpointing
	t.u.Checkpointing = !cfg.NoGradientCheckpointing
	defer func() { t.u.Checkpointing = prevCkpt }()

	meter := training.NewMeter(start, cfg.Steps)
	for step := start + 1; step <= cfg.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return nil, t.interrupted(step-1, err)
		}
		loss, err := t.step(step)
		if err != nil {
			return nil, err
		}
		t.losses = append(t.losses, loss)
		if j.Progress != nil {
			j.Progress(meter.Update(step, map[string]float64{"loss": loss, "avg": meanLast(t.losses, 20)}))
		}
		if step%cfg.CheckpointEvery == 0 || step == cfg.Steps {
			if err := t.save(step); err != nil {
				return nil, err
			}
		}
		if cfg.ValidateEvery > 0 && j.Validation != nil && (step%cfg.ValidateEvery == 0 || step == cfg.Steps) {
			if err := t.validate(ctx, step); err != nil {
				if ctx.Err() != nil {
					return nil, t.interrupted(step, ctx.Err())
				}
				return nil, err
			}
		}
	}
	if start >= cfg.Steps && t.lastPath == "" {
		t.lastPath = training.CheckpointPath(t.ckptDir, start)
	}
	res = &Result{Steps: max(start, cfg.Steps), Losses: t.losses, LoRA: t.set, Checkpoint: t.lastPath, ResumedAt: start,
		Meta: lora.Meta{BaseModelHash: j.BaseModelHash, Identifier: cfg.Identifier, ClassNoun: cfg.ClassNoun,
			Description: cfg.Description, Steps: max(start, cfg.Steps)}}
	return res, nil
}

// checkFull refuses full fine-tuning of packed weights or beyond the
// device's memory.
func (t *trainer) checkFull() error {
	for _, k := range t.u.W.Keys() {
		if t.u.W.Packed(k) {
			return fmt.Errorf("dreambooth: full fine-tuning needs f32 U-Net weights, but %s is packed as binary16 (load the model without F16Weights / --f16-weights=false)", k)
		}
	}
	est := EstimateMemory(t.u.Cfg, t.cfg, t.e.MemStats().Live[gpu.Weights])
	budget, src := DeviceMemory(t.e, t.cfg.MemoryBudget)
	if budget > 0 && est.Total > budget {
		return fmt.Errorf("dreambooth: full fine-tuning at %d px needs about %s (%s) but %s has %s (%s); use LoRA mode, a lower resolution or a larger GPU",
			t.cfg.Resolution, gib(est.Total), est, t.e.Info.Name, gib(budget), src)
	}
	return nil
}

func (t *trainer) prepareClass(ctx context.Context) error {
	cfg, j := t.cfg, t.j
	root := j.ClassCache
	if root == "" {
		root = filepath.Join(j.WorkDir, "class-images")
	}
	ci := ClassImages{Dir: ClassCacheDir(root, j.BaseModelHash, cfg.ClassNoun, cfg.Resolution), BaseModel: j.BaseModelHash,
		ClassNoun: cfg.ClassNoun, N: cfg.ClassImages, Resolution: cfg.Resolution, Steps: cfg.ClassSteps}
	p := j.Pipeline
	comps := generate.FromPipeline(p, j.ModelName)
	paths, err := ci.Ensure(ctx, comps, j.ClassProgress)
	if err != nil {
		return fmt.Errorf("dreambooth: %w", err)
	}
	set, skipped, err := data.LoadFiles(paths, cfg.Resolution)
	for _, s := range skipped {
		t.log("class image skipped: %s", s)
	}
	if err != nil {
		return fmt.Errorf("dreambooth: class images: %w", err)
	}
	t.classSet = set
	cache := openLatentCache(filepath.Join(ci.Dir, "latents.safetensors"), cfg.Resolution)
	if t.class, err = encodeSet(p.VAE, set, cache); err != nil {
		return fmt.Errorf("dreambooth: class images: %w", err)
	}
	if err := cache.save(cfg.Resolution, cfg.Resolution/p.VAE.Factor(), p.VAE.Cfg.LatentChannels); err != nil {
		t.log("class latents not cached: %v", err)
	}
	return nil
}

func (t *trainer) prepareSubject() error {
	var err error
	if t.subj, err = encodeSet(t.j.Pipeline.VAE, t.j.Subject, nil); err != nil {
		return fmt.Errorf("dreambooth: subject images: %w", err)
	}
	return nil
}

// encodePrompts computes the frozen text conditioning once: [instance] or
// [instance; class].
func (t *trainer) encodePrompts() error {
	p, e := t.j.Pipeline, t.e
	prompts := []string{t.cfg.InstancePrompt()}
	if !t.cfg.NoPrior {
		prompts = append(prompts, t.cfg.ClassPrompt())
	}
	var ids [][]int32
	for _, s := range prompts {
		v, cut := p.Tokenizer.EncodeSD(s)
		if cut {
			return fmt.Errorf("dreambooth: prompt %q is longer than 75 tokens", s)
		}
		ids = append(ids, v[:])
	}
	var err error
	e.NoGrad(func() {
		s := e.Scope()
		o, ferr := p.Text.Forward(ids)
		if ferr != nil {
			err = ferr
			s.Close()
			return
		}
		t.cond = o.Last
		s.Close(t.cond)
	})
	if err != nil {
		return fmt.Errorf("dreambooth: text encoder: %w", err)
	}
	return nil
}

// step runs training step k (1-based) and returns its loss.
func (t *trainer) step(k int) (float64, error) {
	e, cfg := t.e, t.cfg
	seed := cfg.Seed
	nb := 1
	if !cfg.NoPrior {
		nb = 2
	}
	c, h, w := t.subj.c, t.subj.h, t.subj.w
	L := c * h * w
	lat := make([]float32, nb*L)
	post := make([]float32, nb*L)
	training.NewStream(seed, k, purposePosterior).Normal(post)
	i, flip := t.j.Subject.Pick(training.NewStream(seed, k, purposeSubject))
	sf := t.j.Pipeline.ScalingFactor
	t.subj.sample(i, flip, post[:L], lat[:L], sf)
	if nb == 2 {
		ci, cflip := t.classSet.Pick(training.NewStream(seed, k, purposeClass))
		t.class.sample(ci, cflip, post[L:], lat[L:], sf)
	}
	eps := make([]float32, nb*L)
	training.NewStream(seed, k, purposeNoise).Normal(eps)
	ts := make([]int, nb)
	tsStream := training.NewStream(seed, k, purposeTimestep)
	for b := range ts {
		ts[b] = tsStream.Intn(t.j.Pipeline.Schedule.NumTrainTimesteps)
	}

	s := e.Scope()
	defer s.Close()
	x0, err := upload(e, lat, nb, c, h, w)
	if err != nil {
		return 0, err
	}
	target, err := upload(e, eps, nb, c, h, w)
	if err != nil {
		return 0, err
	}
	loss, err := dreamboothLoss(t.u, t.j.Pipeline.Schedule, x0, target, ts, t.cond, cfg.PriorWeight)
	if err != nil {
		return 0, err
	}
	lv, err := loss.Item()
	if err != nil {
		e.ResetTape()
		return 0, err
	}
	if ferr := training.CheckFinite("loss", float64(lv)); ferr != nil {
		e.ResetTape()
		var nf *training.NotFiniteError
		errors.As(ferr, &nf)
		nf.Step = k
		return 0, nf
	}
	if err := e.Backward(loss); err != nil {
		return 0, err
	}
	t.opt.Step()
	t.opt.ZeroGrad()
	return float64(lv), e.Err()
}

// dreamboothLoss noises the clean latents x0 [nb, C, h, w] with eps at
// timesteps ts, runs u with the conditioning cond [nb, 77, D] and returns
// MSE(eps, pred) of the subject (batch element 0), plus priorWeight times
// that of the class image (element 1) when nb is 2. Recorded on the tape.
func dreamboothLoss(u *sd.UNet, s *sched.Schedule, x0, eps *gpu.Tensor, ts []int, cond *gpu.Tensor, priorWeight float32) (*gpu.Tensor, error) {
	e := u.W.E
	nb := x0.Dim(0)
	xt, err := s.AddNoise(e, x0, eps, ts)
	if err != nil {
		return nil, err
	}
	tf := make([]float32, nb)
	for i, v := range ts {
		tf[i] = float32(v)
	}
	pred := u.Forward(xt, e.FromSlice(tf, nb), cond)     // [nb, C, h, w]
	if eps, err = s.Target(e, x0, eps, ts); err != nil { // eps, or v for v-prediction
		return nil, err
	}
	if nb == 1 {
		return e.MSELoss(pred, eps), nil
	}
	pp := e.Split(pred, 0, 1, 1)
	tp := e.Split(eps, 0, 1, 1)
	return e.Add(e.MSELoss(pp[0], tp[0]), e.Scale(e.MSELoss(pp[1], tp[1]), priorWeight)), nil
}

// save writes the checkpoint after step, unless the step's gradients were
// not finite (then the parameters are damaged and the previous checkpoint
// stays the last good one).
func (t *trainer) save(step int) error {
	gn, err := t.opt.GradNorm()
	if err != nil {
		return err
	}
	if ferr := training.CheckFinite("gradient norm", float64(gn)); ferr != nil {
		var nf *training.NotFiniteError
		errors.As(ferr, &nf)
		nf.Step = step
		return nf
	}
	path, err := training.SaveCheckpoint(t.ckptDir, step, t.params, t.opt, ckptState{Fingerprint: t.fp, Losses: t.losses}, t.cfg.Keep)
	if err != nil {
		return fmt.Errorf("dreambooth: %w", err)
	}
	t.lastSaved, t.lastPath = step, path
	t.log("checkpoint %s", path)
	return nil
}

// checkResumable refuses a work folder whose newest checkpoint belongs
// to a run with other settings or inputs.
func (t *trainer) checkResumable() error {
	path, _, _ := training.LatestCheckpoint(t.ckptDir)
	if path == "" {
		return nil
	}
	var st ckptState
	if _, err := training.LoadCheckpoint(path, nil, nil, &st); err != nil {
		return fmt.Errorf("dreambooth: %w", err)
	}
	if d := st.Fingerprint.diff(t.fp); len(d) > 0 {
		return fmt.Errorf("dreambooth: %s is from a different run (%s); use another work folder to start afresh", path, strings.Join(d, "; "))
	}
	return nil
}

// resume loads the newest checkpoint of the work folder, if any, and
// returns its step.
func (t *trainer) resume() (int, error) {
	path, step, skipped := training.LatestCheckpoint(t.ckptDir)
	for _, err := range skipped {
		t.log("unreadable checkpoint skipped: %v", err)
	}
	if path == "" {
		return 0, nil
	}
	var st ckptState
	if _, err := training.LoadCheckpoint(path, t.params, t.opt, &st); err != nil {
		return 0, fmt.Errorf("dreambooth: %w", err)
	}
	if len(st.Losses) > step {
		st.Losses = st.Losses[:step]
	}
	t.losses = st.Losses
	t.lastSaved, t.lastPath = step, path
	t.log("resumed from %s (step %d)", path, step)
	return step, nil
}

// interrupted saves the state after step (when newer than the last
// checkpoint) and returns the InterruptedError.
func (t *trainer) interrupted(step int, cause error) error {
	if step > t.lastSaved {
		if err := t.save(step); err != nil {
			return errors.Join(&InterruptedError{Step: step, Checkpoint: t.lastPath, Err: cause}, err)
		}
	}
	return &InterruptedError{Step: step, Checkpoint: t.lastPath, Err: cause}
}

// validate samples the validation images with the current weights.
func (t *trainer) validate(ctx context.Context, step int) error {
	cfg, p := t.cfg, t.j.Pipeline
	prompt := cfg.ValidationPrompt
	if prompt == "" {
		prompt = cfg.InstancePrompt()
	}
	comps := generate.FromPipeline(p, t.j.ModelName)
	res, err := generate.Generate(ctx, comps, generate.Params{Prompt: prompt, Seed: cfg.ValidationSeed, Steps: cfg.ValidationSteps,
		Width: cfg.Resolution, Height: cfg.Resolution, Count: cfg.ValidationImages}, nil)
	if err != nil {
		return fmt.Errorf("dreambooth: validation images: %w", err)
	}
	t.j.Validation(step, res.Images)
	return nil
}

// meanLast is the mean of the last n values of xs.
func meanLast(xs []float64, n int) float64 {
	if len(xs) < n {
		n = len(xs)
	}
	if n == 0 {
		return 0
	}
	s := 0.0
	for _, v := range xs[len(xs)-n:] {
		s += v
	}
	return s / float64(n)
}
