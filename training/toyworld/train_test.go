package toyworld

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

// tinyConfig is the smallest model of the same structure, for tests: with
// the default pixel codec, or with kl an AutoencoderKL on 64x64 images.
func tinyConfig(kl bool) ModelConfig {
	c := DefaultModelConfig()
	c.Text = clip.TextConfig{HiddenSize: 32, Heads: 2, Layers: 2, Intermediate: 64, HiddenAct: "quick_gelu",
		LayerNormEps: 1e-5, MaxPositions: clip.ContextLength, VocabSize: VocabSize()}
	lc := c.VAE.LatentChannels
	if kl {
		c.VAE, c.Codec, c.ImageSize = VAEConfig64(), 0, 64
		c.VAE.BlockOutChannels = []int{32, 32, 32, 32}
		lc = 4
		// The held-out loss compares latents of an untrained VAE (before)
		// with rescaled ones (after); eps targets do not depend on them.
		c.Prediction = sched.PredictEpsilon
	}
	c.UNet = unetConfig([]int{32, 32}, 1, 32, 2, 32)
	c.UNet.InChannels, c.UNet.OutChannels = lc, lc
	return c
}

// heldOutLoss is the diffusion loss on a fixed batch with fixed noise and
// timesteps (no gradients).
func heldOutLoss(t *testing.T, e *gpu.Engine, m *Model) float64 {
	t.Helper()
	const n = 4
	size := m.Cfg.ImageSize
	b := MakeBatch(77, 0, n, size, 0)
	var v float32
	var err error
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		mean, _ := m.VAE.Encode(e.FromSlice(b.Images, n, 3, size, size))
		lat := m.VAE.Latents(mean, nil, nil)
		eps := e.FromSlice(gaussian(77, purposeEps, 0, lat.Len()), lat.Shape()...)
		xt, _ := m.Schedule.AddNoise(e, lat, eps, []int{100, 400, 700, 900})
		ids := make([][]int32, n)
		for i, c := range b.Captions {
			enc, _ := m.Tokenizer.EncodeSD(c)
			ids[i] = enc[:]
		}
		text, _ := m.Text.Forward(ids)
		target, _ := m.Schedule.Target(e, lat, eps, []int{100, 400, 700, 900})
		v, err = e.MSELoss(m.UNet.Forward(xt, e.FromSlice([]float32{100, 400, 700, 900}, n), text.Last), target).Item()
	})
	if err != nil {
		t.Fatal(err)
	}
	return float64(v)
}

// TestTrain_shortRunSavesALoadableModel: a few steps of both stages lower
// the held-out diffusion loss, write a diffusers folder that sd.Load loads
// and generate.Generate samples an image of the model's size from, and a
// second call resumes where the first stopped; with the pixel codec and
// with an AutoencoderKL.
func TestTrain_shortRunSavesALoadableModel(t *testing.T) {
	for _, kl := range []bool{false, true} {
		t.Run(map[bool]string{false: "codec", true: "kl"}[kl], func(t *testing.T) { testShortRun(t, kl) })
	}
}

func testShortRun(t *testing.T, kl bool) {
	e := testenv.Engine(t)
	out := t.TempDir()
	o := DefaultTrainOptions(out)
	o.Config = tinyConfig(kl)
	o.VAESteps, o.VAEBatch, o.Steps, o.Batch = 1, 1, 6, 2
	o.LR = 2e-3
	o.ProgressEvery = 2
	var lines []string
	o.Progress = func(p Progress) { lines = append(lines, p.String()) }

	m0, err := NewModel(e, o.Config, o.Seed)
	if err != nil {
		t.Fatal(err)
	}
	before := heldOutLoss(t, e, m0)
	m0.Release()

	res, err := Train(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		t.Log(l)
	}
	wantVAE, wantLines := 1, 4
	if !kl {
		wantVAE, wantLines = 0, 3 // no VAE stage
	}
	if !res.Done || res.Step != 6 || res.VAEStep != wantVAE || len(lines) != wantLines {
		t.Fatalf("result %+v after %d progress lines, want both stages done", res, len(lines))
	}
	p, err := sd.Load(e, out, sd.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := FromPipeline(p, o.Config)
	if err != nil {
		t.Fatal(err)
	}
	after := heldOutLoss(t, e, m)
	t.Logf("held-out diffusion loss %.4f before, %.4f after 6 steps; latent scale %.3g", before, after, res.LatentScale)
	if !(after < before) {
		t.Errorf("training did not lower the held-out loss: %.4f -> %.4f", before, after)
	}
	size := o.Config.ImageSize
	if m.VAE.Patch != o.Config.Codec || m.Scaling != float32(res.LatentScale) && !kl {
		t.Errorf("loaded codec patch %d scale %g, want %d and %g", m.VAE.Patch, m.Scaling, o.Config.Codec, res.LatentScale)
	}
	img, err := generate.Generate(context.Background(), m.Components("toy"), generate.Params{
		Prompt: "a red ball on the grass", Steps: 2, Guidance: 3, Width: size, Height: size, Sampler: "ddim"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Images[0].RGB.Bounds(); b.Dx() != size || b.Dy() != size {
		t.Errorf("generated image %v, want %dx%d", b, size, size)
	}
	m.Release()

	// Resume: one more step continues from step 6.
	o.Steps = 7
	lines = nil
	res, err = Train(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Step != 7 || len(lines) != 1 || lines[0][:13] != "base step 7/7" {
		t.Errorf("resumed run: %+v, lines %q", res, lines)
	}
	var st trainState
	b, _ := os.ReadFile(filepath.Join(out, "train", "state.json"))
	if err := json.Unmarshal(b, &st); err != nil || st.Stage != "done" || st.Step != 7 {
		t.Errorf("state %s (%v)", b, err)
	}
}

// TestTrain_timeLimit: a run out of time ends the VAE stage (rescaling the
// latents) and the diffusion stage without a step, saves a loadable model
// and reports that it is not done; a later run resumes at the diffusion
// stage.
func TestTrain_timeLimit(t *testing.T) {
	e := testenv.Engine(t)
	out := t.TempDir()
	o := DefaultTrainOptions(out)
	o.Config = tinyConfig(true)
	o.TimeLimit = time.Millisecond
	res, err := Train(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Done || res.VAEStep != 0 || res.Step != 0 || res.LatentScale <= 0 {
		t.Fatalf("result %+v", res)
	}
	var st trainState
	b, _ := os.ReadFile(filepath.Join(out, "train", "state.json"))
	if err := json.Unmarshal(b, &st); err != nil || st.Stage != "base" {
		t.Fatalf("state %s (%v), want the diffusion stage next", b, err)
	}
	p, err := sd.Load(e, out, sd.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Release()
}
