package generate

import (
	"context"
	"fmt"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/sched"
)

// Tolerances of the fixtures' README: model outputs 1e-4, trajectories
// 1e-3, both relative to max(1, absmax).
const (
	tolModel      = 1e-4
	tolTrajectory = 1e-3
)

// TestSample_DDIM10 reproduces diffusers' 10-step DDIM (eta 0) guided run
// from ref/sampling.safetensors: the guided eps of the first step, every
// latent of the trajectory, the final latents and their decoding.
func TestSample_DDIM10(t *testing.T) {
	c := tiny(t)
	e := engine(t)
	ref := refFile(t, "sampling.safetensors")
	xT := upload(t, e, ref, "in/init_latents")
	defer xT.Release()
	cond, uncond := upload(t, e, ref, "in/cond"), upload(t, e, ref, "in/uncond")
	defer cond.Release()
	defer uncond.Release()
	g, err := NewGuide(c.UNet, cond, uncond, 7.5)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	smp, err := c.Schedule.NewSampler("ddim", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantTs, _, _ := ref.Int64("ddim10/timesteps")
	for i, ts := range smp.Timesteps() {
		if int64(ts) != wantTs[i] {
			t.Fatalf("timestep %d = %g, want %d", i, ts, wantTs[i])
		}
	}

	var eps0 *gpu.Tensor
	e.NoGrad(func() { eps0 = g.Eps(xT, smp.Timesteps()[0]) })
	want, _ := read(t, ref, "ddim10/guided_eps_step0")
	expectClose(t, "ddim10/guided_eps_step0", eps0.MustRead(), want, tolModel)
	eps0.Release()

	steps := 0
	x0, tr, err := Sample(context.Background(), xT, SampleConfig{Sampler: smp, Guide: g, Record: true, RecordPred0: true,
		Progress: func(done, total int) {
			if done != steps+1 || total != 10 {
				t.Errorf("progress (%d, %d) after %d steps", done, total, steps)
			}
			steps = done
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer x0.Release()
	if steps != 10 {
		t.Errorf("progress reported %d steps", steps)
	}
	per, shape := read(t, ref, "ddim10/latents_per_step") // [11, 2, 4, 8, 8]
	if len(tr.Latents) != shape[0] || tr.LogProbs != nil {
		t.Fatalf("trajectory has %d latents and %d log-probs, want %d and none", len(tr.Latents), len(tr.LogProbs), shape[0])
	}
	n := len(per) / shape[0]
	for k := range tr.Latents {
		expectClose(t, fmt.Sprintf("ddim10/latents_per_step[%d]", k), tr.Latents[k], per[k*n:(k+1)*n], tolTrajectory)
	}
	final, _ := read(t, ref, "ddim10/final_latents")
	expectClose(t, "ddim10/final_latents", x0.MustRead(), final, tolTrajectory)

	// The x_0 predictions: step 0's from the reference eps; every step's
	// eps recovered from it gives the step's DDIM update (eta 0).
	if len(tr.Pred0) != 10 {
		t.Fatalf("%d x_0 predictions", len(tr.Pred0))
	}
	ddim := smp.(*sched.DDIM)
	c0 := ddim.Coeffs(0)
	xTv := xT.MustRead()
	want0 := make([]float32, len(xTv))
	for i := range want0 {
		want0[i] = (xTv[i] - c0.SqrtOneMT*want[i]) / c0.SqrtAbarT
	}
	expectClose(t, "x_0 prediction of step 0 (reference eps)", tr.Pred0[0], want0, tolModel)
	for k, p0 := range tr.Pred0 {
		c := ddim.Coeffs(k)
		next := make([]float32, len(p0))
		for i, v := range p0 {
			x := tr.Latents[k][i]
			eps := (x - c.SqrtAbarT*v) / c.SqrtOneMT
			next[i] = c.A*x + c.B*eps
		}
		expectClose(t, fmt.Sprintf("DDIM step %d from its x_0 prediction", k), next, tr.Latents[k+1], 1e-5)
	}

	// Our final latents through the VAE (errors of the whole run), and the
	// reference final latents through it (the VAE alone).
	wantDec, _ := read(t, ref, "ddim10/decoded")
	dec := DecodeLatents(c.VAE, x0)
	expectClose(t, "ddim10/decoded", dec.MustRead(), wantDec, tolTrajectory)
	dec.Release()
	rf := e.FromSlice(final, x0.Shape()...)
	dec = DecodeLatents(c.VAE, rf)
	expectClose(t, "ddim10/decoded (from the reference final latents)", dec.MustRead(), wantDec, tolModel)
	dec.Release()
	rf.Release()
}

// TestSample_DDPO50 reproduces ddpo-pytorch's pipeline_with_logprob run
// (DDIM eta 1, 50 steps, CFG 7.5) with its stored noise: the trajectory
// and the per-step log-probabilities.
func TestSample_DDPO50(t *testing.T) {
	c := tiny(t)
	e := engine(t)
	ref := refFile(t, "sampling.safetensors")
	xT := upload(t, e, ref, "in/init_latents")
	defer xT.Release()
	cond, uncond := upload(t, e, ref, "in/cond"), upload(t, e, ref, "in/uncond")
	defer cond.Release()
	defer uncond.Release()
	g, err := NewGuide(c.UNet, cond, uncond, 7.5)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	smp, err := c.Schedule.NewSampler("ddim", 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	noises, nshape := read(t, ref, "ddpo50/noises") // [50, 2, 4, 8, 8]
	n := len(noises) / nshape[0]
	x0, tr, err := Sample(context.Background(), xT, SampleConfig{Sampler: smp, Guide: g, Record: true,
		Noise: func(k int) []float32 { return noises[k*n : (k+1)*n] }})
	if err != nil {
		t.Fatal(err)
	}
	defer x0.Release()
	lat, lshape := read(t, ref, "ddpo50/latents") // [51, 2, 4, 8, 8]
	lps, _ := read(t, ref, "ddpo50/log_probs")    // [50, 2]
	if len(tr.Latents) != lshape[0] || len(tr.LogProbs) != 50 || tr.Eta != 1 {
		t.Fatalf("trajectory: %d latents, %d log-probs, eta %g", len(tr.Latents), len(tr.LogProbs), tr.Eta)
	}
	var gotL, gotP []float32
	for k := range tr.Latents {
		gotL = append(gotL, tr.Latents[k]...)
	}
	for k := range tr.LogProbs {
		gotP = append(gotP, tr.LogProbs[k]...)
	}
	expectClose(t, "ddpo50/latents", gotL, lat, tolTrajectory)
	expectClose(t, "ddpo50/log_probs", gotP, lps, tolTrajectory)
	// Step by step, the worst latent error (it grows along the run).
	for _, k := range []int{1, 10, 25, 50} {
		sub := lat[k*n : (k+1)*n]
		expectClose(t, fmt.Sprintf("ddpo50/latents[%d]", k), tr.Latents[k], sub, tolTrajectory)
	}
	expectClose(t, "x0 = latents[50]", x0.MustRead(), lat[50*n:], tolTrajectory)
}

// TestSample_errors: mismatched batches and a missing noise source are
// errors, not panics.
func TestSample_errors(t *testing.T) {
	c := tiny(t)
	e := engine(t)
	cond := e.Zeros(2, 77, c.UNet.Cfg.CrossAttentionDim)
	defer cond.Release()
	if _, err := NewGuide(c.UNet, cond, e.Zeros(1, 77, c.UNet.Cfg.CrossAttentionDim), 7.5); err == nil {
		t.Error("uncond of another batch accepted")
	}
	if _, err := NewGuide(c.UNet, e.Zeros(2, 77, 5), nil, 1); err == nil {
		t.Error("conditioning of the wrong width accepted")
	}
	g, err := NewGuide(c.UNet, cond, cond, 7.5)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	smp, _ := c.Schedule.NewSampler("ddim", 3, 1)
	x := e.Zeros(1, 4, 8, 8)
	defer x.Release()
	if _, _, err := Sample(context.Background(), x, SampleConfig{Sampler: smp, Guide: g}); err == nil {
		t.Error("batch 1 latents with batch 2 conditioning accepted")
	}
	for _, bad := range [][]int{{2, 3, 8, 8}, {2, 4, 6, 8}, {2, 4, 8}} {
		xb := e.Zeros(bad...)
		if _, _, err := Sample(context.Background(), xb, SampleConfig{Sampler: smp, Guide: g}); err == nil {
			t.Errorf("latents %v accepted", bad)
		}
		xb.Release()
	}
	x2 := e.Zeros(2, 4, 8, 8)
	defer x2.Release()
	if _, _, err := Sample(context.Background(), x2, SampleConfig{Sampler: smp, Guide: g}); err == nil {
		t.Error("stochastic sampler without noise accepted")
	}
	if _, _, err := Sample(context.Background(), x2, SampleConfig{Sampler: smp, Guide: g,
		Noise: func(int) []float32 { return make([]float32, 3) }}); err == nil {
		t.Error("short noise accepted")
	}
}
