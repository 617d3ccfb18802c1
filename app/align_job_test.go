package app

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/store"
)

// TestAlign_job runs two DDPO epochs on the tiny model through the runner,
// starting from a personalised LoRA checkpoint (the fixture's kohya file),
// with the brightness reward: the run finishes, each epoch's reward is in
// the run's metrics, the personalised LoRA is fused (log), and the RL LoRA
// is stored as checkpoints (epoch 1, periodic, and epoch 2, final) that
// load against the model with trained (non-zero) Up weights. A model
// reward without its path is refused before any GPU work.
func TestAlign_job(t *testing.T) {
	u := newTestUI(t, true, trainerRegistry())
	bm := tinyModel(t, u)
	s := photoSubject(t, u)
	_, personal := loraRun(t, u, store.KindPersonalize, s, bm, "lora_kohya.safetensors", 100)
	cfg := DefaultAlignConfig(s)
	cfg.CheckpointID = personal.ID
	cfg.Prompts = cfg.Prompts[:2]
	cfg.Reward = "brightness"
	cfg.Epochs, cfg.SamplesPerEpoch, cfg.BatchSize, cfg.SamplingSteps = 2, 2, 2, 2
	cfg.Guidance, cfg.LearningRate, cfg.CheckpointEvery, cfg.Seed = 1, 1e-2, 1, 4
	run, err := u.StartRun(store.KindAlign, s.ID, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := u.Runner.Wait(run.ID, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	log := u.RunLog(run.ID)
	if r.Status != store.StatusDone {
		t.Fatalf("run %s %q\nlog:\n%s", r.Status, r.Error, log)
	}
	if !strings.Contains(log, "128 U-Net layers fused") || !strings.Contains(log, "epoch 2: reward") {
		t.Errorf("log:\n%s", log)
	}
	rw := r.Metrics["reward"]
	if len(rw) != 2 || rw[0].Step == rw[1].Step {
		t.Fatalf("reward history %v", rw)
	}
	for _, p := range rw {
		if math.IsNaN(p.Value) || p.Value <= 0 || p.Value >= 1 {
			t.Errorf("brightness reward %+v outside (0, 1)", p)
		}
	}
	cps, err := u.DB.Checkpoints(run.ID)
	if err != nil || len(cps) != 2 || cps[0].Step != 1 || cps[1].Step != 2 {
		t.Fatalf("checkpoints %+v, %v", cps, err)
	}
	_, meta := loraTensors(t, u.DB, cps[1].ID)
	if meta.Identifier != s.Identifier || meta.ClassNoun != "dog" || meta.Steps != 2 {
		t.Errorf("metadata %+v", meta)
	}
	err = u.Runner.WithGPU(func(_ *gpu.Engine, m *Models) error {
		pl, _, err := m.Base(bm.ID)
		if err != nil {
			return err
		}
		l, err := LoadCheckpointLoRA(u.DB, cps[1].ID, pl)
		if err != nil {
			return err
		}
		defer l.Release()
		moved := 0.0
		for _, a := range l.UNet {
			for _, v := range a.Up.MustRead() {
				moved = math.Max(moved, math.Abs(float64(v)))
			}
		}
		if len(l.UNet) == 0 || moved == 0 {
			t.Errorf("%d adapters, max |Up| %g: nothing trained", len(l.UNet), moved)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	bad := cfg
	bad.Reward = "imagereward"
	run2, err := u.StartRun(store.KindAlign, s.ID, "", bad)
	if err == nil {
		r2, _ := u.Runner.Wait(run2.ID, time.Minute)
		if r2.Status != store.StatusFailed || !strings.Contains(r2.Error, "imagereward:PATH") {
			t.Errorf("imagereward without a path: %s %q", r2.Status, r2.Error)
		}
	} else if !strings.Contains(err.Error(), "imagereward:PATH") {
		t.Errorf("imagereward without a path: %v", err)
	}
}

// TestCheckRewardSpec: the Align form and job accept the built-in rewards
// and model rewards whose model exists, and refuse the rest with a message
// that says what to write.
func TestCheckRewardSpec(t *testing.T) {
	model := filepath.Join(testenv.Fixtures(t), "rewards-tiny", "imagereward", "ImageReward.safetensors")
	for _, c := range []struct{ spec, want string }{
		{"brightness", ""}, {"jpeg", ""}, {"imagereward:" + model, ""},
		{"imagereward", "imagereward:PATH"}, {"pickscore:/nonexistent/x", "/nonexistent/x"},
		{"hpsv2", "unknown reward"}, {"brightness:3", "unknown reward"},
	} {
		err := checkRewardSpec(c.spec)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q: %v (want %q)", c.spec, err, c.want)
		}
	}
}
