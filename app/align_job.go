package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training/ddpo"
	"github.com/instructbooth/instructbooth/training/reward"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
)

// runDDPODir is the DDPO trainer's work folder inside a run's folder.
const runDDPODir = "ddpo"

// PrefAlignReward remembers the Align form's last reward spec.
const PrefAlignReward = "alignReward"

// checkRewardSpec refuses a reward spec that cannot work: an unknown
// reward, or a model reward without its model's path.
func checkRewardSpec(spec string) error {
	registerToyWorld()
	name, path, _ := strings.Cut(spec, ":")
	switch name {
	case "imagereward", "clip", "pickscore":
		if path == "" {
			return fmt.Errorf("the %s reward needs its model: write it as %s:PATH", name, name)
		}
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("reward %s: %w", name, err)
		}
		return nil
	}
	for _, n := range reward.Names() {
		if n == name && path == "" {
			return nil
		}
	}
	return fmt.Errorf("unknown reward %q: use imagereward:PATH, clip:PATH, pickscore:PATH, %s (%s: for the toy world model)", spec, strings.Join(reward.Names(), ", "), demo.RewardName)
}

type alignJob struct {
	env  JobEnv
	cfg  AlignConfig
	subj store.Subject
}

// NewAlignJob is the Factory of align runs (Config: AlignConfig): DDPO
// (training/ddpo) on the base model with the personalised LoRA of
// CheckpointID fused in, rewarded by Reward. Reward is a reward spec:
// "jpeg", "brightness", "toyworld" (the toy world's alignment score, for
// the toy model), or a model reward with its path ("imagereward:PATH",
// "clip:PATH", "pickscore:PATH").
func NewAlignJob(env JobEnv) (Job, error) {
	var cfg AlignConfig
	if err := json.Unmarshal(env.Run.Config, &cfg); err != nil {
		return nil, fmt.Errorf("align: configuration: %w", err)
	}
	subj, err := env.DB.Subject(env.Run.SubjectID)
	if err != nil {
		return nil, fmt.Errorf("align: subject: %w", err)
	}
	if len(cfg.Prompts) == 0 {
		return nil, fmt.Errorf("align: no training prompts")
	}
	if err := checkRewardSpec(cfg.Reward); err != nil {
		return nil, fmt.Errorf("align: %w", err)
	}
	return &alignJob{env: env, cfg: cfg, subj: subj}, nil
}

func (j *alignJob) Run(ctx context.Context, report func(Progress)) (err error) {
	env, run := j.env, j.env.Run
	dir := RunDir(env.DB, run.ID)
	work := filepath.Join(dir, runDDPODir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("align: work folder: %w", err)
	}
	log := openRunLog(dir)
	defer log.Close()
	defer func() {
		if err != nil {
			log.Printf("stopped: %v", err)
		}
	}()
	if !env.Resumed {
		if err := os.RemoveAll(work); err != nil {
			return fmt.Errorf("align: %w", err)
		}
		log.Printf("align %s: %d prompts, reward %s, %d epochs", j.subj.Name, len(j.cfg.Prompts), j.cfg.Reward, j.cfg.Epochs)
	} else {
		log.Printf("resuming")
	}
	bm, err := env.DB.BaseModel(run.BaseModelID)
	if err != nil {
		if run.BaseModelID == "" {
			return ErrNoBaseModel
		}
		return err
	}
	// The personalised LoRA is fused into the U-Net's weights, so the run
	// uses a private copy of the model (the shared one is unloaded).
	env.Models.Release()
	pl, err := sd.Load(env.Engine, bm.Path, sd.LoadOptions{F16Weights: true})
	if err != nil {
		return fmt.Errorf("base model %q: %w", bm.Name, err)
	}
	defer pl.Release()
	model := bm.Hash
	if model == "" {
		model = bm.Path
	}
	meta := lora.Meta{Identifier: j.subj.Identifier, ClassNoun: j.subj.Class, Description: j.subj.Description, BaseModelHash: bm.Hash}
	if j.cfg.CheckpointID != "" {
		l, err := LoadCheckpointLoRA(env.DB, j.cfg.CheckpointID, pl)
		if err != nil {
			return fmt.Errorf("align: personalised LoRA: %w", err)
		}
		defer l.Release()
		if err := ddpo.FuseLoRA(pl.UNet.W, l.UNet); err != nil {
			return fmt.Errorf("align: personalised LoRA: %w", err)
		}
		if len(l.TextEncoder) > 0 {
			pl.Text.W.Root().Attach(l.TextEncoder)
			defer pl.Text.W.Root().Attach(nil)
		}
		model += " + checkpoint " + j.cfg.CheckpointID
		log.Printf("personalised LoRA %s: %d U-Net layers fused", j.cfg.CheckpointID, len(l.UNet))
	}

	rewards := reward.NewRegistry()
	demo.Register(rewards)
	reward.RegisterModels(rewards, reward.ModelEnv{
		Engine:    func() *gpu.Engine { return env.Engine },
		Tokenizer: func() *clip.Tokenizer { return pl.Tokenizer },
	})
	scorer, err := rewards.New(j.cfg.Reward)
	if err != nil {
		return fmt.Errorf("align: %w", err)
	}
	if c, ok := scorer.(interface{ Close() error }); ok {
		defer c.Close()
	}
	size := NativeSize(bm.Path)
	tc := ddpo.Config{
		Model: model, Prompts: j.cfg.Prompts, Epochs: j.cfg.Epochs, SamplesPerEpoch: j.cfg.SamplesPerEpoch,
		BatchSize: j.cfg.BatchSize, InnerEpochs: j.cfg.InnerEpochs, Steps: j.cfg.SamplingSteps,
		Guidance: float32(j.cfg.Guidance), Eta: float32(j.cfg.Eta), Width: size, Height: size,
		LR: float32(j.cfg.LearningRate), ClipRange: j.cfg.ClipRange, AdvClip: j.cfg.AdvClipMax,
		Seed: j.cfg.Seed, WorkDir: work, SamplesPerPrompt: j.cfg.SamplesPerPrompt, PooledStd: j.cfg.PooledStd, AccumBatches: j.cfg.AccumBatches,
		TimestepFraction: j.cfg.TimestepFraction, EarlyFraction: j.cfg.EarlyFraction, StepBaseline: j.cfg.StepBaseline,
	}.WithDefaults()
	if err := tc.Validate(); err != nil {
		return fmt.Errorf("align: %w", err)
	}
	comps := generate.FromPipeline(pl, bm.Name)
	t, err := ddpo.New(comps, scorer, tc)
	if err != nil {
		return fmt.Errorf("align: %w", err)
	}
	defer t.Release()
	every := max(1, j.cfg.CheckpointEvery)
	storeEpoch := func(epoch int) error {
		m := meta
		m.Steps = epoch
		return storeRunLoRA(env, t.LoRA(), m, epoch)
	}
	err = t.Run(ctx, func(p ddpo.Progress) {
		pr := Progress{Step: p.Step, Total: p.Total, Phase: p.Phase}
		if p.Phase == ddpo.PhaseEpoch && p.Stats != nil {
			st := p.Stats
			pr.Phase = ""
			pr.Metrics = map[string]float64{"reward": st.RewardMean, "reward_std": st.RewardStd, "approx_kl": st.ApproxKL}
			log.Printf("epoch %d: reward %.4f ± %.4f, approx KL %.3g, clip fraction %.3g", st.Epoch, st.RewardMean, st.RewardStd, st.ApproxKL, st.ClipFrac)
			if st.Epoch%every == 0 && st.Epoch < tc.Epochs {
				if err := storeEpoch(st.Epoch); err != nil {
					log.Printf("checkpoint of epoch %d not stored: %v", st.Epoch, err)
				}
			}
		}
		report(pr)
	})
	if err != nil {
		if e := t.Epoch(); e > 0 {
			if serr := storeEpoch(e); serr != nil {
				log.Printf("checkpoint of epoch %d not stored: %v", e, serr)
			}
		}
		return err
	}
	log.Printf("done: %d epochs", t.Epoch())
	return storeEpoch(t.Epoch())
}
