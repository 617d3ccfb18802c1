package sched

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/safetensors"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return testenv.Fixtures(t)
}

func TestSchedule_matchesTorch(t *testing.T) {
	fx := fixtures(t)
	c, err := LoadConfig(filepath.Join(fx, "sd-tiny", "diffusers", "scheduler", "scheduler_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := New(c)
	ref, err := safetensors.Open(filepath.Join(fx, "sd-tiny", "ref", "ddim_ddpo.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	ac, _, err := ref.Float32("sched/alphas_cumprod")
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range ac {
		worst = math.Max(worst, math.Abs(float64(ac[i]-s.AlphasCumprod[i])))
	}
	if worst > 1e-6 {
		t.Errorf("alphas_cumprod off by %g", worst)
	}
	for _, n := range []int{50, 10} {
		want, _, _ := ref.Int64(fmt.Sprintf("sched/timesteps_%d", n))
		got := s.Timesteps(n)
		for i := range want {
			if int64(got[i]) != want[i] {
				t.Fatalf("timesteps(%d)[%d] = %d, want %d", n, i, got[i], want[i])
			}
		}
	}
}

// TestRefDDIMStep_matchesDDPO checks the CPU reference step (mean, sample,
// sigma and both log-probs) against ddpo-pytorch's ddim_step_with_logprob.
func TestRefDDIMStep_matchesDDPO(t *testing.T) {
	fx := fixtures(t)
	s := New(SD15())
	ref, err := safetensors.Open(filepath.Join(fx, "sd-tiny", "ref", "ddim_ddpo.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	get := func(k string) []float32 {
		v, _, err := ref.Float32(k)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, step := range []int{0, 1, 24, 48, 49} {
		p := fmt.Sprintf("step%d/", step)
		ts, _, _ := ref.Int64("out/" + p + "timestep")
		xt, eps, given := get("in/"+p+"sample"), get("in/"+p+"model_output"), get("in/"+p+"given_prev_sample")
		noise, wantMean, wantPrev := get("out/"+p+"noise"), get("out/"+p+"prev_sample_mean"), get("out/"+p+"prev_sample")
		wantLP, wantLPG, wantStd := get("out/"+p+"log_prob"), get("out/"+p+"log_prob_given"), get("out/"+p+"std_dev_t")
		per := len(xt) / 2
		for b := 0; b < 2; b++ {
			c := s.DDIMStep(int(ts[b]), 50, 1)
			if d := math.Abs(float64(c.Sigma - wantStd[b])); d > 1e-6 {
				t.Errorf("%s sigma %g, want %g", p, c.Sigma, wantStd[b])
			}
			sl := func(v []float32) []float32 { return v[b*per : (b+1)*per] }
			mean, sample, lp := RefDDIMStep(c, sl(xt), sl(eps), sl(noise), nil)
			_, _, lpg := RefDDIMStep(c, sl(xt), sl(eps), sl(noise), sl(given))
			for i := range mean {
				if math.Abs(float64(mean[i]-sl(wantMean)[i])) > 1e-5 || math.Abs(float64(sample[i]-sl(wantPrev)[i])) > 1e-5 {
					t.Fatalf("%s batch %d element %d: mean %g/%g sample %g/%g", p, b, i, mean[i], sl(wantMean)[i], sample[i], sl(wantPrev)[i])
				}
			}
			if math.Abs(lp-float64(wantLP[b])) > 1e-5 {
				t.Errorf("%s log_prob %g, want %g", p, lp, wantLP[b])
			}
			if math.Abs(lpg-float64(wantLPG[b])) > 1e-5*math.Max(1, math.Abs(float64(wantLPG[b]))) {
				t.Errorf("%s log_prob_given %g, want %g", p, lpg, wantLPG[b])
			}
		}
	}
}

// TestStep_GPU runs the DDIM/DDPO step on the engine against the fixture:
// mean, sample, both log-probs, and the gradient of the log-prob with
// respect to eps against the analytic one.
func TestStep_GPU(t *testing.T) {
	e := testenv.Engine(t)
	fx := fixtures(t)
	s := New(SD15())
	ref, err := safetensors.Open(filepath.Join(fx, "sd-tiny", "ref", "ddim_ddpo.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	up := func(k string) (*gpu.Tensor, []float32) {
		v, info, err := ref.Float32(k)
		if err != nil {
			t.Fatal(err)
		}
		return e.FromSlice(v, info.Shape...), v
	}
	for _, step := range []int{0, 24, 49} {
		p := fmt.Sprintf("step%d/", step)
		ts, _, _ := ref.Int64("out/" + p + "timestep")
		st := Step{s.DDIMStep(int(ts[0]), 50, 1)}
		xt, _ := up("in/" + p + "sample")
		eps, epsv := up("in/" + p + "model_output")
		eps.SetRequiresGrad(true)
		given, _ := up("in/" + p + "given_prev_sample")
		z, _ := up("out/" + p + "noise")
		mean := st.Mean(e, xt, eps)
		prev := st.Sample(e, mean, z)
		lp := st.LogProb(e, prev, mean)
		lpg := st.LogProb(e, given, mean)
		check := func(name string, got *gpu.Tensor, key string, tol float64, rel bool) {
			want, _, _ := ref.Float32("out/" + p + key)
			g := got.MustRead()
			for i := range want {
				lim := tol
				if rel {
					lim *= math.Max(1, math.Abs(float64(want[i])))
				}
				if math.Abs(float64(g[i]-want[i])) > lim {
					t.Fatalf("%s %s[%d] = %g, want %g", p, name, i, g[i], want[i])
				}
			}
		}
		check("mean", mean, "prev_sample_mean", 1e-5, false)
		check("sample", prev, "prev_sample", 1e-5, false)
		check("log_prob", lp, "log_prob", 1e-5, false)
		check("log_prob_given", lpg, "log_prob_given", 1e-5, true)
		// d(sum lpg)/d eps = B * (given - mean) / (sigma^2 * CHW).
		if err := e.BackwardWith(lpg, e.Full(1, 2)); err != nil {
			t.Fatal(err)
		}
		gv, _, _ := ref.Float32("in/" + p + "given_prev_sample")
		mv := mean.MustRead()
		got := eps.Grad.MustRead()
		per := float64(len(epsv) / 2)
		sg := float64(st.Sigma)
		for i := range got {
			want := float64(st.B) * float64(gv[i]-mv[i]) / (sg * sg * per)
			if math.Abs(float64(got[i])-want) > 1e-4*math.Max(1, math.Abs(want)) {
				t.Fatalf("%s dlogp/deps[%d] = %g, want %g", p, i, got[i], want)
			}
		}
	}
}

// TestAddNoise_matchesDiffusers reproduces the gradient fixture's z_t from
// its z0, eps and timesteps (scheduler.add_noise).
func TestAddNoise_matchesDiffusers(t *testing.T) {
	e := testenv.Engine(t)
	ref, err := safetensors.Open(filepath.Join(fixtures(t), "sd-tiny", "ref", "grads.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	up := func(k string) *gpu.Tensor {
		v, info, err := ref.Float32(k)
		if err != nil {
			t.Fatal(err)
		}
		return e.FromSlice(v, info.Shape...)
	}
	ts, _, _ := ref.Int64("in/timesteps")
	zt, err := New(SD15()).AddNoise(e, up("in/z0"), up("in/eps"), []int{int(ts[0]), int(ts[1])})
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := ref.Float32("in/z_t")
	got := zt.MustRead()
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-5 {
			t.Fatalf("z_t[%d] = %g, want %g", i, got[i], want[i])
		}
	}
	if _, err := New(SD15()).AddNoise(e, up("in/z0"), up("in/eps"), []int{1000, 3}); err == nil {
		t.Error("timestep 1000 accepted")
	}
}
