package toyworld

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sd"
)

// TrainOptions configure Train. DefaultTrainOptions fills them.
type TrainOptions struct {
	// Out is the diffusers folder the model is written to; Train resumes
	// from it when Out/train/state.json exists.
	Out    string
	Config ModelConfig
	Seed   uint64

	// Stage 1: the VAE, trained for reconstruction (MSE + KLWeight x KL).
	VAESteps, VAEBatch int
	VAELR, KLWeight    float32
	// VAEShare is the share of TimeLimit the VAE stage may use.
	VAEShare float64

	// Stage 2: text encoder and U-Net, epsilon-prediction diffusion loss.
	Steps, Batch   int
	LR             float32
	CaptionDropout float64 // share of captions replaced by "" (classifier-free guidance)
	FreezeText     bool    // keep the text encoder at its random initialisation

	// TimeLimit stops the run cleanly (saving) once it has run this long;
	// 0: no limit.
	TimeLimit time.Duration
	// CheckpointEvery saves the model and optimizer every so many steps.
	CheckpointEvery int
	// ProgressEvery is how often (steps) Progress is called.
	ProgressEvery int
	Progress      func(Progress)
}

// DefaultTrainOptions are the settings scripts/train-toyworld.sh uses.
func DefaultTrainOptions(out string) TrainOptions {
	return TrainOptions{
		Out: out, Config: DefaultModelConfig(), Seed: 1,
		VAESteps: 4000, VAEBatch: 32, VAELR: 1e-3, KLWeight: 1e-5, VAEShare: 0.3,
		Steps: 30000, Batch: 64, LR: 5e-4, CaptionDropout: 0.1,
		CheckpointEvery: 1000, ProgressEvery: 50,
	}
}

// Progress is one progress report of Train.
type Progress struct {
	Stage       string // "vae" or "base"
	Step, Total int
	Loss        float64 // mean over the steps since the last report
	LR          float32
	Rate        float64       // steps per second in this process
	ETA         time.Duration // to Total at Rate, or to the time limit if sooner
}

func (p Progress) String() string {
	s := fmt.Sprintf("%s step %d/%d (%d%%)  loss %.5f  lr %.2g", p.Stage, p.Step, p.Total, 100*p.Step/max(1, p.Total), p.Loss, p.LR)
	switch {
	case p.Rate >= 1:
		s += fmt.Sprintf("  %.2f it/s", p.Rate)
	case p.Rate > 0:
		s += fmt.Sprintf("  %.2f s/it", 1/p.Rate)
	}
	if p.ETA > 0 {
		s += "  ETA " + p.ETA.Round(time.Second).String()
	}
	return s
}

// trainState is Out/train/state.json: where a run stands.
type trainState struct {
	Stage   string `json:"stage"` // "vae", "base" or "done"
	VAEStep int    `json:"vae_step"`
	Step    int    `json:"step"`
	Seed    uint64 `json:"seed"`
	// LatentScale is the factor the last latent normalisation applied.
	LatentScale float64 `json:"latent_scale,omitempty"`
	// Loss is the mean loss of the last reported steps of each stage.
	VAELoss  float64 `json:"vae_loss,omitempty"`
	BaseLoss float64 `json:"base_loss,omitempty"`
}

// TrainResult reports a finished (or stopped) run.
type TrainResult struct {
	VAEStep, Step     int
	VAELoss, BaseLoss float64
	LatentScale       float64
	Done              bool // both stages ran to their step counts
	Elapsed           time.Duration
}

func statePath(out string) string { return filepath.Join(out, "train", "state.json") }

// Train trains the toy base model: first the VAE on world images, then the
// text encoder and U-Net on the VAE's latents with SD's epsilon-prediction
// loss (DDPM noise at uniform timesteps, MSE), AdamW with a cosine
// learning rate from LR to LR/10 over the run (steps or time limit,
// whichever ends first), gradient clipping at norm 1, and caption dropout
// for classifier-free guidance. It saves Out (a diffusers folder sd.Load
// reads) with the optimizer state and Out/train/state.json every
// CheckpointEvery steps, at the end of each stage, and when ctx is
// cancelled or the time limit is reached, and resumes from them.
func Train(ctx context.Context, e *gpu.Engine, o TrainOptions) (*TrainResult, error) {
	start := time.Now()
	if o.VAEBatch <= 0 || o.Batch <= 0 || o.VAESteps < 0 || o.Steps < 0 {
		return nil, fmt.Errorf("toyworld: train: batch sizes must be positive and step counts non-negative")
	}
	st := trainState{Stage: "vae", Seed: o.Seed}
	var m *Model
	if b, err := os.ReadFile(statePath(o.Out)); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", statePath(o.Out), err)
		}
		p, err := sd.Load(e, o.Out, sd.LoadOptions{})
		if err != nil {
			return nil, fmt.Errorf("toyworld: resuming from %s: %w", o.Out, err)
		}
		if m, err = FromPipeline(p, o.Config); err != nil {
			p.Release()
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	} else {
		var err error
		if m, err = NewModel(e, o.Config, o.Seed); err != nil {
			return nil, err
		}
	}
	defer m.Release()
	if st.Stage == "done" && st.Step < o.Steps {
		st.Stage = "base" // more steps asked of a finished run
	}
	t := &trainer{e: e, m: m, o: o, st: st, start: start}
	res := &TrainResult{}
	var err error
	if t.st.Stage == "vae" && m.VAE.Patch > 0 {
		err = t.codecScale()
	} else if t.st.Stage == "vae" {
		err = t.vaeStage(ctx)
	}
	if err == nil && t.st.Stage == "base" {
		err = t.baseStage(ctx)
	}
	res.VAEStep, res.Step, res.VAELoss, res.BaseLoss = t.st.VAEStep, t.st.Step, t.st.VAELoss, t.st.BaseLoss
	res.LatentScale, res.Done, res.Elapsed = t.st.LatentScale, t.st.Stage == "done", time.Since(start)
	return res, err
}

type trainer struct {
	e     *gpu.Engine
	m     *Model
	o     TrainOptions
	st    trainState
	start time.Time
}

// saveReserve is kept free of training before the time limit for saving.
const saveReserve = 10 * time.Second

// deadline returns when the stage must stop (zero: no limit).
func (t *trainer) deadline(share float64) time.Time {
	if t.o.TimeLimit <= 0 {
		return time.Time{}
	}
	return t.start.Add(time.Duration(share*float64(t.o.TimeLimit)) - saveReserve)
}

// cosineLR is the learning rate at progress p in [0, 1], with a linear
// warm-up over the first 2%.
func cosineLR(base float32, p float64) float32 {
	p = math.Max(0, math.Min(1, p))
	f := 0.1 + 0.9*0.5*(1+math.Cos(math.Pi*p))
	if p < 0.02 {
		f *= (p + 0.002) / 0.022
	}
	return base * float32(f)
}

// progressOf is the run's progress through a stage: steps done or time
// used, whichever is further.
func progressOf(step, total int, from, until time.Time) float64 {
	p := float64(step) / float64(max(1, total))
	if !until.IsZero() {
		p = math.Max(p, float64(time.Since(from))/float64(until.Sub(from)))
	}
	return p
}

// newOptimizer builds AdamW over params, restoring its state from file
// when present.
func (t *trainer) newOptimizer(params []*gpu.Tensor, lr float32, file string) (*gpu.AdamW, error) {
	opt := t.e.NewAdamW(params, lr)
	opt.MaxGradNorm = 1
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return opt, nil
	} else if err != nil {
		opt.Release()
		return nil, err
	}
	defer f.Close()
	if err := opt.LoadState(f); err != nil {
		opt.Release()
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return opt, nil
}

// save writes the model, the optimizer state and the run state.
func (t *trainer) save(opt *gpu.AdamW, optFile string) error {
	if err := t.m.Save(t.o.Out); err != nil {
		return err
	}
	dir := filepath.Join(t.o.Out, "train")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if opt != nil {
		tmp := optFile + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if err := opt.SaveState(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp, optFile); err != nil {
			return err
		}
	}
	b, _ := json.MarshalIndent(t.st, "", "  ")
	return writeFileAtomic(statePath(t.o.Out), append(b, '\n'))
}

// report tracks the loss and rate between progress reports.
type report struct {
	stage      string
	total      int
	from       time.Time
	firstStep  int
	sum        float64
	n          int
	every      int
	progress   func(Progress)
	deadline   time.Time
	lastLoss   float64
	lastReport int
}

func (r *report) add(step int, loss float64, lr float32) {
	r.sum += loss
	r.n++
	if r.every <= 0 || (step%r.every != 0 && step != r.total) {
		return
	}
	p := Progress{Stage: r.stage, Step: step, Total: r.total, Loss: r.sum / float64(r.n), LR: lr}
	r.lastLoss, r.sum, r.n, r.lastReport = p.Loss, 0, 0, step
	if el := time.Since(r.from).Seconds(); el > 0 && step > r.firstStep {
		p.Rate = float64(step-r.firstStep) / el
		p.ETA = time.Duration(float64(r.total-step) / p.Rate * float64(time.Second))
		if !r.deadline.IsZero() {
			p.ETA = min(p.ETA, time.Until(r.deadline))
		}
	}
	if r.progress != nil {
		r.progress(p)
	}
}

// mean returns the loss of the last report, or of the steps since.
func (r *report) mean() float64 {
	if r.n > 0 {
		return r.sum / float64(r.n)
	}
	return r.lastLoss
}

// gaussian returns n standard normal values of stream (seed, purpose,
// step).
func gaussian(seed uint64, purpose uint64, step, n int) []float32 {
	v := make([]float32, n)
	generate.Noise(seed^purpose, uint64(step), v)
	return v
}

// Noise purposes.
const (
	purposeVAE   = 0x7661650000000000
	purposeEps   = 0x6570730000000000
	purposeLat   = 0x6c61740000000000
	purposeTimes = 0x74696d6500000000
)

func (t *trainer) vaeStage(ctx context.Context) error {
	e, m, o := t.e, t.m, t.o
	optFile := filepath.Join(o.Out, "train", "adamw-vae.bin")
	opt, err := t.newOptimizer(m.VAE.W.Params(), o.VAELR, optFile)
	if err != nil {
		return err
	}
	defer opt.Release()
	deadline := t.deadline(o.VAEShare)
	stageStart := time.Now()
	size, lc, ls := o.Config.ImageSize, m.VAE.Cfg.LatentChannels, o.Config.LatentSize()
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := prefetch(bctx, o.Seed^purposeVAE, t.st.VAEStep, o.VAEBatch, size, 0)
	rep := &report{stage: "vae", total: o.VAESteps, from: time.Now(), firstStep: t.st.VAEStep, every: o.ProgressEvery, progress: o.Progress, deadline: deadline}
	// save checkpoints the stage; at its end the VAE is first rescaled for
	// SD's latent scale (not before: the KL term would then pull the
	// rescaled latents back).
	save := func(end bool) error {
		t.st.VAELoss = rep.mean()
		if end {
			k, err := t.normalizeLatents()
			if err != nil {
				return err
			}
			t.st.LatentScale = k
			t.st.Stage = "base"
		}
		return t.save(opt, optFile)
	}
	for t.st.VAEStep < o.VAESteps {
		if ctx.Err() != nil {
			return save(false)
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			break // the VAE's share of the time is used up
		}
		b := <-batches
		opt.LR = cosineLR(o.VAELR, progressOf(t.st.VAEStep, o.VAESteps, stageStart, deadline))
		n := o.VAEBatch
		s := e.Scope()
		x := e.FromSlice(b.Images, n, 3, size, size)
		mean, logvar := m.VAE.Encode(x)
		z := e.Add(mean, e.Mul(e.Exp(e.Scale(logvar, 0.5)), e.FromSlice(gaussian(o.Seed, purposeVAE, t.st.VAEStep, n*lc*ls*ls), n, lc, ls, ls)))
		mse := e.MSELoss(m.VAE.Decode(z), x)
		// KL(q || N(0, 1)) per latent element, up to the constant -1/2.
		kl := e.Scale(e.MeanAll(e.Sub(e.Add(e.Mul(mean, mean), e.Exp(logvar)), logvar)), 0.5)
		loss := e.Add(mse, e.Scale(kl, o.KLWeight))
		if err := e.Backward(loss); err != nil {
			s.Close()
			return err
		}
		opt.Step()
		opt.ZeroGrad()
		v, err := mse.Item()
		s.Close()
		if err != nil {
			return err
		}
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("toyworld: vae loss is %v at step %d; the last checkpoint is kept", v, t.st.VAEStep)
		}
		t.st.VAEStep++
		rep.add(t.st.VAEStep, float64(v), opt.LR)
		if o.CheckpointEvery > 0 && t.st.VAEStep%o.CheckpointEvery == 0 {
			if err := save(false); err != nil {
				return err
			}
		}
	}
	return save(true)
}

// CodecScale is a pixel codec's latent scale for world images of the
// given size: one over the standard deviation of their pixels (a fixed set
// of 64 images), so that latents have unit variance.
func CodecScale(size int) float32 {
	const n = 64
	b := MakeBatch(0x6e6f726d, 0, n, size, 0)
	var sum, sq float64
	for _, v := range b.Images {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mu := sum / float64(len(b.Images))
	std := math.Sqrt(math.Max(1e-12, sq/float64(len(b.Images))-mu*mu))
	return float32(1 / std)
}

// codecScale records the pixel codec's scale (set by NewModel) and moves
// on to the diffusion stage.
func (t *trainer) codecScale() error {
	t.st.LatentScale, t.st.Stage = float64(t.m.VAE.Scale), "base"
	return nil
}

// normalizeLatents rescales the VAE so that its posterior means have
// standard deviation 1/ScalingFactor over a fixed set of world images:
// the quant conv's mean rows are multiplied by k (its log-variance biases
// shifted by 2 ln k) and the post-quant conv's inputs divided by k, which
// leaves encode-decode unchanged while sd.ScalingFactor (0.18215, the
// constant generate.Generate uses) brings latents to unit variance.
func (t *trainer) normalizeLatents() (float64, error) {
	e, m := t.e, t.m
	size := t.o.Config.ImageSize
	const n = 16 // 16 x 256 latent values estimate the deviation to about 1%
	b := MakeBatch(0x6e6f726d, 0, n, size, 0)
	var vals []float32
	var err error
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		mean, _ := m.VAE.Encode(e.FromSlice(b.Images, n, 3, size, size))
		vals, err = mean.Read()
	})
	if err != nil {
		return 0, err
	}
	var sum, sq float64
	for _, v := range vals {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mu := sum / float64(len(vals))
	std := math.Sqrt(math.Max(1e-12, sq/float64(len(vals))-mu*mu))
	k := 1 / sd.ScalingFactor / std
	l := m.VAE.Cfg.LatentChannels
	w := m.VAE.W
	scale := func(key string, f func(i int, v float32) float32) error {
		tt := w.Get(key)
		v, err := tt.Read()
		if err != nil {
			return err
		}
		for i := range v {
			v[i] = f(i, v[i])
		}
		return tt.Write(v)
	}
	in := 2 * l // quant_conv.weight [2L, 2L, 1, 1]
	if err := scale("quant_conv.weight", func(i int, v float32) float32 {
		if i/in < l {
			return v * float32(k)
		}
		return v
	}); err != nil {
		return 0, err
	}
	if err := scale("quant_conv.bias", func(i int, v float32) float32 {
		if i < l {
			return v * float32(k)
		}
		return v + float32(2*math.Log(k))
	}); err != nil {
		return 0, err
	}
	if err := scale("post_quant_conv.weight", func(i int, v float32) float32 { return v / float32(k) }); err != nil {
		return 0, err
	}
	return k, nil
}

func (t *trainer) baseStage(ctx context.Context) error {
	e, m, o := t.e, t.m, t.o
	params := m.UNet.W.Params()
	textParams := m.Text.W.Root().Params()
	if o.FreezeText {
		for _, p := range textParams {
			p.SetRequiresGrad(false)
		}
	} else {
		params = append(params, textParams...)
	}
	for _, p := range m.VAE.W.Params() {
		p.SetRequiresGrad(false)
	}
	optFile := filepath.Join(o.Out, "train", "adamw-base.bin")
	opt, err := t.newOptimizer(params, o.LR, optFile)
	if err != nil {
		return err
	}
	defer opt.Release()
	deadline := t.deadline(1)
	stageStart := time.Now()
	size, lc, ls := o.Config.ImageSize, m.VAE.Cfg.LatentChannels, o.Config.LatentSize()
	n := o.Batch
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := prefetch(bctx, o.Seed, t.st.Step, n, size, o.CaptionDropout)
	rep := &report{stage: "base", total: o.Steps, from: time.Now(), firstStep: t.st.Step, every: o.ProgressEvery, progress: o.Progress, deadline: deadline}
	finish := func() error {
		t.st.BaseLoss = rep.mean()
		return t.save(opt, optFile)
	}
	nt := m.Schedule.NumTrainTimesteps
	for t.st.Step < o.Steps {
		if ctx.Err() != nil || (!deadline.IsZero() && time.Now().After(deadline)) {
			return finish()
		}
		b := <-batches
		opt.LR = cosineLR(o.LR, progressOf(t.st.Step, o.Steps, stageStart, deadline))
		ids := make([][]int32, n)
		for i, c := range b.Captions {
			enc, _ := m.Tokenizer.EncodeSD(c)
			ids[i] = enc[:]
		}
		r := NewRand(o.Seed^purposeTimes, uint64(t.st.Step))
		ts := make([]int, n)
		tf := make([]float32, n)
		for i := range ts {
			ts[i] = r.IntN(nt)
			tf[i] = float32(ts[i])
		}
		s := e.Scope()
		var lat *gpu.Tensor
		e.NoGrad(func() {
			mean, logvar := m.VAE.Encode(e.FromSlice(b.Images, n, 3, size, size))
			lat = m.VAE.Latents(mean, logvar, e.FromSlice(gaussian(o.Seed, purposeLat, t.st.Step, n*lc*ls*ls), n, lc, ls, ls))
		})
		eps := e.FromSlice(gaussian(o.Seed, purposeEps, t.st.Step, n*lc*ls*ls), n, lc, ls, ls)
		xt, err := m.Schedule.AddNoise(e, lat, eps, ts)
		if err != nil {
			s.Close()
			return err
		}
		var text *clip.TextOutput
		encode := func() { text, err = m.Text.Forward(ids) }
		if o.FreezeText {
			e.NoGrad(encode)
		} else {
			encode()
		}
		if err != nil {
			s.Close()
			return err
		}
		target, err := m.Schedule.Target(e, lat, eps, ts)
		if err != nil {
			s.Close()
			return err
		}
		loss := e.MSELoss(m.UNet.Forward(xt, e.FromSlice(tf, n), text.Last), target)
		if err := e.Backward(loss); err != nil {
			s.Close()
			return err
		}
		opt.Step()
		opt.ZeroGrad()
		v, err := loss.Item()
		s.Close()
		if err != nil {
			return err
		}
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("toyworld: diffusion loss is %v at step %d; the last checkpoint is kept", v, t.st.Step)
		}
		t.st.Step++
		rep.add(t.st.Step, float64(v), opt.LR)
		if o.CheckpointEvery > 0 && t.st.Step%o.CheckpointEvery == 0 {
			if err := finish(); err != nil {
				return err
			}
		}
	}
	t.st.Stage = "done"
	return finish()
}

// Components returns the model as generate.Generate takes it.
func (m *Model) Components(name string) generate.Components {
	return generate.Components{Tokenizer: m.Tokenizer, Text: m.Text, UNet: m.UNet, VAE: m.VAE, Schedule: m.Schedule, Name: name}
}
