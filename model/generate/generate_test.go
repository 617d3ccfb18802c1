package generate

import (
	"context"
	"errors"
	"image"
	"math"
	"testing"
	"time"
)

func samePixels(a, b *image.NRGBA) bool {
	if a.Rect != b.Rect {
		return false
	}
	for i := range a.Pix {
		if a.Pix[i] != b.Pix[i] {
			return false
		}
	}
	return true
}

// TestGenerate_reproducible: image i of a run with seed S is the image of
// a run with seed S+i alone; different seeds differ; the initial latent is
// the documented noise stream; progress counts every step of the run.
func TestGenerate_reproducible(t *testing.T) {
	c := tiny(t)
	p := Params{Prompt: "a photo of sks dog", Negative: "blurry", Steps: 3, Width: 64, Height: 64, Seed: 7, Count: 2, Record: true}
	var calls []int
	last := time.Duration(-1)
	res, err := Generate(context.Background(), c, p, func(step, total int, elapsed time.Duration) {
		if total != 6 || elapsed < last {
			t.Errorf("progress (%d, %d, %v)", step, total, elapsed)
		}
		last = elapsed
		calls = append(calls, step)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 6 || calls[0] != 1 || calls[5] != 6 {
		t.Errorf("progress steps %v", calls)
	}
	if len(res.Images) != 2 || res.PromptTruncated {
		t.Fatalf("%d images, truncated %v", len(res.Images), res.PromptTruncated)
	}
	im := res.Images[1]
	if im.Params.Seed != 8 || im.Params.Count != 1 || im.Params.Sampler != "dpm++2m" || im.Params.Guidance != 7.5 {
		t.Errorf("image params %+v", im.Params)
	}
	if b := im.RGB.Bounds(); b.Dx() != 64 || b.Dy() != 64 {
		t.Fatalf("image size %v", b)
	}
	if samePixels(res.Images[0].RGB, im.RGB) {
		t.Error("seeds 7 and 8 gave the same image")
	}
	again, err := Generate(context.Background(), c, im.Params, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !samePixels(again.Images[0].RGB, im.RGB) {
		t.Error("regenerating seed 8 alone gave another image")
	}
	// x_T = Noise(seed, stream 0) times the sampler's initial scale.
	smp, _ := c.Schedule.NewSampler("dpm++2m", 3, 0)
	tr := im.Trajectory
	want := make([]float32, 4*8*8)
	Noise(8, 0, want)
	for i := range want {
		want[i] *= smp.InitScale()
		if tr.Latents[0][i] != want[i] {
			t.Fatalf("x_T[%d] = %g, want %g", i, tr.Latents[0][i], want[i])
		}
	}
	if len(tr.Latents) != 4 || tr.LogProbs != nil {
		t.Errorf("trajectory of %d latents, %d log-probs", len(tr.Latents), len(tr.LogProbs))
	}
	// The image is not flat.
	lo, hi := uint8(255), uint8(0)
	for _, v := range im.RGB.Pix {
		lo, hi = min(lo, v), max(hi, v)
	}
	if hi-lo < 16 {
		t.Errorf("pixel range %d..%d", lo, hi)
	}
}

// TestGenerate_samplers runs every sampler (DDIM with eta 1, whose noise
// comes from streams 1.., recording log-probs) for two steps.
func TestGenerate_samplers(t *testing.T) {
	c := tiny(t)
	for _, p := range []Params{
		{Sampler: "ddim", Eta: 1, Record: true},
		{Sampler: "euler", Guidance: 1}, // guidance off: the U-Net runs on the prompt alone
		{Sampler: "dpm++2m", Guidance: 3},
	} {
		p.Prompt, p.Steps, p.Width, p.Height, p.Seed = "a red cube", 2, 64, 64, 1
		res, err := Generate(context.Background(), c, p, nil)
		if err != nil {
			t.Fatalf("%s: %v", p.Sampler, err)
		}
		if tr := res.Images[0].Trajectory; p.Record {
			if len(tr.LogProbs) != 2 || len(tr.LogProbs[0]) != 1 {
				t.Fatalf("%s: log-probs %v", p.Sampler, tr.LogProbs)
			}
			for _, lp := range tr.LogProbs {
				if math.IsNaN(float64(lp[0])) || math.IsInf(float64(lp[0]), 0) {
					t.Errorf("%s: log-prob %g", p.Sampler, lp[0])
				}
			}
		}
	}
}

// TestGenerate_cancel: a context cancelled during the run stops it
// between steps with ctx.Err(); a cancelled context runs no step.
func TestGenerate_cancel(t *testing.T) {
	c := tiny(t)
	ctx, cancel := context.WithCancel(context.Background())
	steps := 0
	_, err := Generate(ctx, c, Params{Prompt: "x", Steps: 5, Width: 64, Height: 64}, func(step, total int, _ time.Duration) {
		steps = step
		if step == 2 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || steps != 2 {
		t.Errorf("cancelled after step 2: err %v after %d steps", err, steps)
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if _, err := Generate(ctx, c, Params{Prompt: "x", Steps: 5, Width: 64, Height: 64}, func(int, int, time.Duration) {
		t.Error("a step ran under an expired context")
	}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired context: %v", err)
	}
}

// TestGenerate_badParams: invalid settings are errors naming the problem.
func TestGenerate_badParams(t *testing.T) {
	c := tiny(t)
	for _, p := range []Params{
		{Width: 100, Height: 64},
		{Width: 64, Height: -64},
		{Width: 64, Height: 64, Sampler: "plms"},
		{Width: 64, Height: 64, Steps: -1},
		{Width: 64, Height: 64, Guidance: float32(math.NaN())},
		{Width: 64, Height: 64, Sampler: "euler", Eta: 0.5},
		{Width: 64, Height: 64, Count: -2},
	} {
		if _, err := Generate(context.Background(), c, p, nil); err == nil {
			t.Errorf("%+v accepted", p)
		} else {
			t.Log(err)
		}
	}
	if _, err := Generate(context.Background(), Components{}, Params{}, nil); err == nil {
		t.Error("empty components accepted")
	}
}

// BenchmarkGenerate_tiny20 is one 20-step DPM++ 2M generation of the tiny
// model at 64x64 (8x8 latents), text encoding and VAE decoding included.
func BenchmarkGenerate_tiny20(b *testing.B) {
	c := tiny(b)
	p := Params{Prompt: "a photo of sks dog", Steps: 20, Width: 64, Height: 64}
	for i := 0; i < b.N; i++ {
		p.Seed = uint64(i)
		if _, err := Generate(context.Background(), c, p, nil); err != nil {
			b.Fatal(err)
		}
	}
}
