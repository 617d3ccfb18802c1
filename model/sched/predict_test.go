package sched

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
)

// TestVPrediction: for v-prediction, EpsFromOutput of the exact target v
// (Target) at x_t (AddNoise) gives back eps, for integer and fractional
// timesteps given per element or once; epsilon prediction passes the
// output through; LoadConfig accepts both and refuses "sample".
func TestVPrediction(t *testing.T) {
	e := testenv.Engine(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	c := SD15()
	c.PredictionType = PredictV
	s := New(c)
	const n, k = 3, 5 * 7
	rnd := func() []float32 {
		v := make([]float32, n*k)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	x0 := e.FromSlice(rnd(), n, 5, 7, 1)
	eps := e.FromSlice(rnd(), n, 5, 7, 1)
	ts := []int{0, 480, 999}
	xt, err := s.AddNoise(e, x0, eps, ts)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Target(e, x0, eps, ts)
	if err != nil {
		t.Fatal(err)
	}
	// v = sqrt(abar) eps - sqrt(1-abar) x0, checked on the CPU.
	vv, x0v, ev := v.MustRead(), x0.MustRead(), eps.MustRead()
	for i := range vv {
		ab := float64(s.AlphasCumprod[ts[i/k]])
		want := math.Sqrt(ab)*float64(ev[i]) - math.Sqrt(1-ab)*float64(x0v[i])
		if math.Abs(float64(vv[i])-want) > 1e-5 {
			t.Fatalf("v[%d] = %g, want %g", i, vv[i], want)
		}
	}
	got := s.EpsFromOutput(e, v, xt, []float32{0, 480, 999}).MustRead()
	for i := range got {
		if math.Abs(float64(got[i]-ev[i])) > 1e-4 {
			t.Fatalf("eps[%d] = %g, want %g", i, got[i], ev[i])
		}
	}
	// One fractional timestep for the whole batch: abar interpolated.
	one, err := s.AddNoise(e, x0, eps, []int{480, 480, 480})
	if err != nil {
		t.Fatal(err)
	}
	vone, _ := s.Target(e, x0, eps, []int{480, 480, 480})
	g2 := s.EpsFromOutput(e, vone, one, []float32{480.25}).MustRead()
	var maxd float64
	for i := range g2 {
		maxd = math.Max(maxd, math.Abs(float64(g2[i]-ev[i])))
	}
	if maxd > 0.01 || maxd == 0 {
		t.Errorf("t = 480.25 against 480: max difference %g, want small but not zero", maxd)
	}
	c.PredictionType = PredictEpsilon
	if out := New(c).EpsFromOutput(e, v, xt, []float32{1}); out != v {
		t.Error("epsilon prediction changed the output")
	}
}
