package dreambooth

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/training"
)

// tinyConfig is a run on the sd-tiny model at 64 px (8x8 latents) with two
// class images drawn in two sampling steps.
func tinyConfig(mode Mode, steps int, lr float32) Config {
	return Config{Mode: mode, ClassNoun: "dog", Description: "red", Resolution: 64, Steps: steps, ClassImages: 2, ClassSteps: 2,
		LR: lr, Seed: 11, CheckpointEvery: 1000}
}

func mean(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// lossDecreases trains on three subject images and checks that the mean
// loss of the last window steps is clearly (0.25) below that of the first
// window (per-step losses vary with the random timestep by about +-0.2),
// and that the validation images arrive.
func lossDecreases(t *testing.T, mode Mode, steps, window int, lr float32, checkpointing bool) {
	e := testenv.Engine(t)
	p := loadTiny(t, e)
	cfg := tinyConfig(mode, steps, lr)
	cfg.NoGradientCheckpointing = !checkpointing
	cfg.ValidateEvery, cfg.ValidationSteps = steps-steps/2, 1
	var valSteps []int
	res, err := Train(context.Background(), Job{Config: cfg, Pipeline: p, Subject: loadSubject(t), WorkDir: t.TempDir(), BaseModelHash: "tiny", ClassCache: classCache,
		Validation: func(step int, imgs []generate.Image) {
			if len(imgs) != 1 || imgs[0].RGB.Bounds().Dx() != 64 {
				t.Errorf("validation at step %d: %d images", step, len(imgs))
			}
			valSteps = append(valSteps, step)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if res.LoRA != nil {
		defer res.LoRA.Release()
	}
	first, last := mean(res.Losses[:window]), mean(res.Losses[len(res.Losses)-window:])
	t.Logf("losses %.3f; first %d %.3f, last %d %.3f", res.Losses, window, first, window, last)
	if len(res.Losses) != steps || last > first-0.25 {
		t.Errorf("loss did not fall clearly: first %d steps %.3f, last %d %.3f", window, first, window, last)
	}
	if v := steps - steps/2; len(valSteps) != 2 || valSteps[0] != v || valSteps[1] != steps {
		t.Errorf("validation at steps %v, want [%d %d]", valSteps, v, steps)
	}
	if (mode == ModeLoRA) != (res.LoRA != nil) {
		t.Errorf("mode %s returned LoRA %v", mode, res.LoRA)
	}
}

func TestTrain_lossDecreasesLoRA(t *testing.T) { lossDecreases(t, ModeLoRA, 12, 4, 4e-2, true) }
func TestTrain_lossDecreasesFull(t *testing.T) { lossDecreases(t, ModeFull, 9, 3, 2e-3, false) }

// TestTrain_resumeMatches interrupts a LoRA run after step 2 (cancelling
// its context from the progress callback), resumes it to step 4 and
// compares the losses and the trained adapters with an uninterrupted run
// of 4 steps: they must agree bit for bit.
func TestTrain_resumeMatches(t *testing.T) {
	e := testenv.Engine(t)
	p := loadTiny(t, e)
	subject := loadSubject(t)
	classes := classCache
	cfg := tinyConfig(ModeLoRA, 4, 5e-3)
	cfg.CheckpointEvery = 3 // a periodic checkpoint after the interruption
	job := func(work string) Job {
		return Job{Config: cfg, Pipeline: p, Subject: subject, WorkDir: work, ClassCache: classes, BaseModelHash: "tiny"}
	}
	full, err := Train(context.Background(), job(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer full.LoRA.Release()

	work := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	j := job(work)
	j.Progress = func(s training.Status) {
		if s.Step == 2 {
			cancel()
		}
	}
	_, err = Train(ctx, j)
	var ie *InterruptedError
	if !errors.As(err, &ie) || !errors.Is(err, context.Canceled) || ie.Step != 2 {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := os.Stat(training.CheckpointPath(filepath.Join(work, "checkpoints"), 2)); err != nil {
		t.Fatalf("no checkpoint at the interruption: %v", err)
	}
	var notes []string
	j = job(work)
	j.Log = func(s string) { notes = append(notes, s) }
	resumed, err := Train(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.LoRA.Release()
	if resumed.ResumedAt != 2 || !strings.Contains(strings.Join(notes, "\n"), "resumed from") {
		t.Errorf("resumed at %d; notes %q", resumed.ResumedAt, notes)
	}
	if len(resumed.Losses) != 4 {
		t.Fatalf("%d losses after resuming", len(resumed.Losses))
	}
	for i := range full.Losses {
		if full.Losses[i] != resumed.Losses[i] {
			t.Errorf("loss of step %d: %v uninterrupted, %v resumed", i+1, full.Losses[i], resumed.Losses[i])
		}
	}
	a, b := full.LoRA.Params(), resumed.LoRA.Params()
	worst := 0.0
	for i := range a {
		va, vb := a[i].MustRead(), b[i].MustRead()
		for k := range va {
			worst = max(worst, float64(abs32(va[k]-vb[k])))
		}
	}
	if worst != 0 {
		t.Errorf("adapters differ by up to %g after resuming", worst)
	}
	// A checkpoint of another run is refused, naming the difference.
	other := cfg
	other.Seed = 12
	j = job(work)
	j.Config = other
	if _, err := Train(context.Background(), j); err == nil || !strings.Contains(err.Error(), "seed 11 (checkpoint) vs 12 (now)") {
		t.Errorf("resuming with another seed: %v", err)
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// TestTrain_nonFinite poisons a base weight with NaN after step 2 of a
// LoRA run: step 3 stops with a NotFiniteError naming the step, and the
// checkpoint of step 2 stays the newest.
func TestTrain_nonFinite(t *testing.T) {
	e := testenv.Engine(t)
	p := loadTiny(t, e)
	cfg := tinyConfig(ModeLoRA, 4, 1e-3)
	cfg.NoPrior = true
	cfg.CheckpointEvery = 1
	work := t.TempDir()
	bias := p.UNet.W.Get("conv_out.bias")
	_, err := Train(context.Background(), Job{Config: cfg, Pipeline: p, Subject: loadSubject(t), WorkDir: work, BaseModelHash: "tiny",
		Progress: func(s training.Status) {
			if s.Step == 2 {
				nan := make([]float32, bias.Len())
				for i := range nan {
					nan[i] = float32(math.NaN())
				}
				bias.Write(nan)
			}
		}})
	var nf *training.NotFiniteError
	if !errors.As(err, &nf) || nf.Step != 3 || nf.What != "loss" {
		t.Fatalf("got %v, want a NotFiniteError of the loss at step 3", err)
	}
	t.Logf("%v", err)
	path, step, _ := training.LatestCheckpoint(filepath.Join(work, "checkpoints"))
	if path == "" || step != 2 {
		t.Errorf("latest checkpoint %q at step %d, want step 2", path, step)
	}
}

// TestTrain_refusesFull: full fine-tuning beyond the memory budget or on
// binary16-packed weights fails up front with the figures.
func TestTrain_refusesFull(t *testing.T) {
	e := testenv.Engine(t)
	p := loadTiny(t, e)
	cfg := tinyConfig(ModeFull, 2, 1e-4)
	cfg.MemoryBudget = 1 << 20
	_, err := Train(context.Background(), Job{Config: cfg, Pipeline: p, Subject: loadSubject(t), WorkDir: t.TempDir(), BaseModelHash: "tiny"})
	if err == nil || !strings.Contains(err.Error(), "needs about") || !strings.Contains(err.Error(), "optimizer") || !strings.Contains(err.Error(), "1.0 MiB (configured budget)") {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}
