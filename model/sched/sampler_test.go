package sched

import (
	"math"
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
)

// TestSamplers_recoverDeltaData: when the data distribution is a single
// point x0, the ideal noise prediction is known in closed form, and every
// deterministic sampler must land on x0.
func TestSamplers_recoverDeltaData(t *testing.T) {
	e := testenv.Engine(t)
	s := New(SD15())
	r := rand.New(rand.NewSource(3))
	n := 4 * 3 * 5
	x0 := make([]float32, n)
	noise := make([]float32, n)
	for i := range x0 {
		x0[i] = float32(r.NormFloat64())
		noise[i] = float32(r.NormFloat64())
	}
	for _, name := range []string{"ddim", "euler", "dpm++2m"} {
		for _, steps := range []int{10, 25} {
			smp, err := s.NewSampler(name, steps, 0)
			if err != nil {
				t.Fatal(err)
			}
			init := make([]float32, n)
			for i := range init {
				init[i] = noise[i] * smp.InitScale()
			}
			x := e.FromSlice(init, 1, 4, 3, 5)
			var eps0 []float32
			for k, ts := range smp.Timesteps() {
				xv := x.MustRead()
				eps := make([]float32, n)
				for i := range eps {
					// The model sees x * InputScale; in VP terms that is
					// sqrt(abar) x0 + sqrt(1-abar) eps at the (fractional)
					// timestep, so eps = (x_in - sqrt(abar) x0) / sqrt(1-abar).
					a := interpAbar(s, float64(ts))
					xin := float64(xv[i]) * float64(smp.InputScale(k))
					eps[i] = float32((xin - math.Sqrt(a)*float64(x0[i])) / math.Sqrt(1-a))
				}
				if k == 0 {
					eps0 = eps
				}
				x = smp.Step(e, k, x, e.FromSlice(eps, 1, 4, 3, 5), nil)
			}
			got := x.MustRead()
			worst := 0.0
			a0 := float64(s.FinalAlphaCumprod)
			for i := range got {
				want := float64(x0[i])
				if name == "ddim" {
					// DDIM keeps eps constant along the trajectory and ends at
					// abar_0 < 1 (set_alpha_to_one false), not at sigma 0.
					want = math.Sqrt(a0)*want + math.Sqrt(1-a0)*float64(eps0[i])
				}
				worst = math.Max(worst, math.Abs(float64(got[i])-want))
			}
			if worst > 1e-3 {
				t.Errorf("%s %d steps: max |x - x0| = %g", name, steps, worst)
			}
		}
	}
}

// interpAbar is abar at a fractional timestep, interpolating log sigma as
// the sigma samplers do.
func interpAbar(s *Schedule, t float64) float64 {
	lo := int(math.Floor(t))
	hi := min(lo+1, len(s.AlphasCumprod)-1)
	w := t - float64(lo)
	ls := func(i int) float64 {
		a := float64(s.AlphasCumprod[i])
		return 0.5 * math.Log((1-a)/a)
	}
	sg := math.Exp((1-w)*ls(lo) + w*ls(hi))
	return 1 / (1 + sg*sg)
}
