package ddpo

import (
	"math"
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sched"
)

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestStepLogProb checks the per-element log-probability against the
// float64 reference (sched.RefDDIMStep) for elements at different steps,
// and against sched.Step.LogProb when they share one.
func TestStepLogProb(t *testing.T) {
	e, c := tiny(t)
	rng := rand.New(rand.NewSource(3))
	const per = 4 * 8 * 8
	ts := c.Schedule.Timesteps(50)
	ks := []int{0, 13, 30, 49} // the last step has the smallest sigma
	var xs, es, ps []float32
	var cs []sched.DDIMCoeffs
	var want []float64
	for _, k := range ks {
		co := c.Schedule.DDIMStep(ts[k], 50, 1)
		x, eps, z := randn(rng, per), randn(rng, per), randn(rng, per)
		_, prev, lp := sched.RefDDIMStep(co, x, eps, z, nil)
		xs, es, ps = append(xs, x...), append(es, eps...), append(ps, prev...)
		cs = append(cs, co)
		want = append(want, lp)
	}
	n := len(ks)
	var got []float32
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		lp, err := StepLogProb(e, e.FromSlice(xs, n, 4, 8, 8), e.FromSlice(es, n, 4, 8, 8), e.FromSlice(ps, n, 4, 8, 8), cs)
		if err != nil {
			t.Fatal(err)
		}
		got = lp.MustRead()
		// All elements at one step: the same as sched.Step.LogProb.
		st := sched.Step{DDIMCoeffs: cs[1]}
		x, eps, prev := e.FromSlice(xs, n, 4, 8, 8), e.FromSlice(es, n, 4, 8, 8), e.FromSlice(ps, n, 4, 8, 8)
		a := st.LogProb(e, prev, st.Mean(e, x, eps)).MustRead()
		b, err := StepLogProb(e, x, eps, prev, []sched.DDIMCoeffs{cs[1], cs[1], cs[1], cs[1]})
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range b.MustRead() {
			if d := math.Abs(float64(v - a[i])); d > 1e-5*math.Max(1, math.Abs(float64(a[i]))) {
				t.Errorf("shared step, element %d: %v, sched.Step.LogProb %v", i, v, a[i])
			}
		}
	})
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > 2e-5*math.Max(1, math.Abs(want[i])) {
			t.Errorf("element %d (t=%d, sigma %.4g): log-prob %v, reference %v (diff %.2g)", i, cs[i].T, cs[i].Sigma, got[i], want[i], d)
		}
	}
	e.NoGrad(func() {
		s := e.Scope()
		defer s.Close()
		x := e.FromSlice(xs[:per], 1, 4, 8, 8)
		if _, err := StepLogProb(e, x, x, x, []sched.DDIMCoeffs{c.Schedule.DDIMStep(ts[0], 50, 0)}); err == nil {
			t.Error("eta 0 (sigma 0) was accepted")
		}
		if _, err := StepLogProb(e, x, x, x, cs); err == nil {
			t.Error("4 coefficients for a batch of 1 were accepted")
		}
	})
}

// TestGuidedEps checks the per-element-timestep guided prediction against
// generate.Guide (one timestep for the batch), with and without guidance.
func TestGuidedEps(t *testing.T) {
	e, c := tiny(t)
	rng := rand.New(rand.NewSource(4))
	const n = 2
	x := randn(rng, n*4*8*8)
	cond := randn(rng, n*77*32)
	unc := randn(rng, n*77*32)
	for _, scale := range []float32{7.5, 1} {
		e.NoGrad(func() {
			s := e.Scope()
			defer s.Close()
			ct, ut := e.FromSlice(cond, n, 77, 32), e.FromSlice(unc, n, 77, 32)
			g, err := generate.NewGuide(c.UNet, ct, ut, scale)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Release()
			xt := e.FromSlice(x, n, 4, 8, 8)
			want := g.Eps(xt, 501).MustRead()
			ctx := ct
			if scale > 1 {
				ctx = e.Concat(0, ut, ct)
			}
			got := GuidedEps(c.UNet, xt, []float32{501, 501}, ctx, scale).MustRead()
			worst := 0.0
			for i := range want {
				worst = math.Max(worst, math.Abs(float64(got[i]-want[i])))
			}
			if worst > 1e-5 {
				t.Errorf("guidance %g: max difference %.3g from generate.Guide", scale, worst)
			}
		})
	}
}
