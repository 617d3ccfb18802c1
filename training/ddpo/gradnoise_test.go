package ddpo

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestNoiseFigures: estimates of K group means of G samples each, every
// sample = mu + noise (per coordinate sd s), recover |mu|, the noise norm
// s*sqrt(dim) and the samples needed s^2*dim/|mu|^2; pure noise shows no
// direction.
func TestNoiseFigures(t *testing.T) {
	if k := moduleKind("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0.lora.up.weight"); k != "attn2.to_out" {
		t.Errorf("moduleKind = %q", k)
	}
	const seed, k, g, dim, s = 11, 400, 8, 60, 0.5
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	draw := func(mu float64) [][]float64 {
		vs := make([][]float64, k)
		for b := range vs {
			vs[b] = make([]float64, dim)
			for i := range vs[b] {
				vs[b][i] = mu + rng.NormFloat64()*s/math.Sqrt(g)
			}
		}
		return vs
	}
	mu := 0.05 // |mu| = 0.05*sqrt(60) = 0.387; noise norm 0.5*sqrt(60) = 3.87; 100 samples for SNR 1
	f := noiseFigures(draw(mu), g)
	t.Logf("signal: %+v", f)
	wantSig, wantNoise := mu*math.Sqrt(dim), s*math.Sqrt(dim)
	if math.Abs(f.Signal/wantSig-1) > 0.15 || math.Abs(f.Noise/wantNoise-1) > 0.05 || math.Abs(f.SamplesNeeded/100-1) > 0.3 {
		t.Errorf("signal %.3f (want %.3f), noise %.3f (want %.3f), samples needed %.1f (want 100)", f.Signal, wantSig, f.Noise, wantNoise, f.SamplesNeeded)
	}
	// Each half averages 1600 samples: SNR^2 16 per coordinate set, cosine about 16/17.
	if f.HalfCosine < 0.85 {
		t.Errorf("half cosine %.3f with a strong signal", f.HalfCosine)
	}
	f = noiseFigures(draw(0), g)
	t.Logf("noise only: %+v", f)
	// sd of the unbiased |mu|^2 estimate is about noise^2/(g k) * sqrt(2/dim) = 0.0009: Signal below 0.1.
	if f.Signal > 0.1 || f.SamplesNeeded < 1000 || math.Abs(f.HalfCosine) > 0.5 {
		t.Errorf("pure noise: signal %.3f, samples needed %.1f, half cosine %.3f", f.Signal, f.SamplesNeeded, f.HalfCosine)
	}
}

// TestMeasureGradient_matchesTraining: the mean over batches and steps of
// the measured gradients is the gradient one AdamW step of training takes
// on the same samples when every step is trained (its norm before
// clipping), and the measurement leaves the LoRA as it was.
func TestMeasureGradient_matchesTraining(t *testing.T) {
	for _, sb := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "step-baseline"}[sb], func(t *testing.T) { measureMatchesTraining(t, sb) })
	}
}

func measureMatchesTraining(t *testing.T, stepBaseline bool) {
	_, c := tiny(t)
	cfg := Config{StepBaseline: stepBaseline, Prompts: []string{"a sks dog playing soccer", "a dog in the snow"}, Epochs: 1, SamplesPerEpoch: 8, BatchSize: 4,
		SamplesPerPrompt: 4, Steps: 3, TimestepFraction: 1, Guidance: 3, Width: 64, Height: 64, LR: 1e-3, Seed: 4,
		NoGradCheckpointing: true, MicroBatch: 4, ClipRange: 0.2}
	tr, err := New(c, borderBrightness{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Release()
	// A non-zero LoRA, so that every parameter has a gradient.
	for _, p := range tr.Params() {
		v := make([]float32, p.Len())
		for i := range v {
			v[i] = 0.01 * float32((i*7)%13-6)
		}
		p.Write(v)
	}
	before := readParams(t, tr)
	gn, err := tr.MeasureGradient(context.Background(), 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", gn.Total)
	if gn.Groups != 2 || len(gn.PerStep) != 3 || len(gn.Timesteps) != 3 || gn.Samples != 8 {
		t.Fatalf("measurement %+v", gn)
	}
	// The projections partition the coordinates: sizes and squared norms add up.
	var np int
	var m2 float64
	for _, m := range gn.ByModule {
		np += m.Params
		m2 += m.MeanNorm * m.MeanNorm
		if !strings.HasPrefix(m.Module, "attn1.to_") && !strings.HasPrefix(m.Module, "attn2.to_") {
			t.Errorf("projection kind %q", m.Module)
		}
	}
	var want int
	for _, p := range tr.Params() {
		want += p.Len()
	}
	if len(gn.ByModule) != 8 || np != want || math.Abs(m2/(gn.Total.MeanNorm*gn.Total.MeanNorm)-1) > 1e-9 {
		t.Errorf("%d projection kinds with %d parameters (want 8, %d), squared norms %g vs %g", len(gn.ByModule), np, want, m2, gn.Total.MeanNorm*gn.Total.MeanNorm)
	}
	for name, v := range readParams(t, tr) {
		for i := range v {
			if v[i] != before[name][i] {
				t.Fatalf("%s changed by the measurement", name)
			}
		}
	}
	samples, err := tr.sampleEpoch(context.Background(), measureEpoch0, func() {})
	if err != nil {
		t.Fatal(err)
	}
	adv, err := tr.advantages(tr.cfg.newTracker(), samples)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range samples {
		if stepBaseline != (len(s.StepRewards) == cfg.Steps && len(s.StepAdv) == cfg.Steps) {
			t.Fatalf("sample %d: %d step rewards, %d step advantages", i, len(s.StepRewards), len(s.StepAdv))
		}
	}
	var st EpochStats
	if err := tr.trainEpoch(context.Background(), 0, samples, adv, &st, func(map[string]float64) {}); err != nil {
		t.Fatal(err)
	}
	t.Logf("training step: grad norm %.6g, measured mean gradient norm %.6g", st.GradNorm, gn.Total.MeanNorm)
	if st.Updates != 1 || !(gn.Total.MeanNorm > 0) || math.Abs(st.GradNorm/gn.Total.MeanNorm-1) > 1e-3 {
		t.Errorf("training gradient norm %.6g, measured %.6g", st.GradNorm, gn.Total.MeanNorm)
	}
	if _, err := tr.MeasureGradient(context.Background(), 12, nil); err == nil {
		t.Error("12 samples with 8 per epoch: no error")
	}
}

// TestMeasureInitialNoise: pairs share x_T and the first steps' noise and
// so their trajectories up to there; sharing all but the last (small
// sigma) step leaves little of the within-prompt reward spread.
func TestMeasureInitialNoise(t *testing.T) {
	_, c := tiny(t)
	cfg := Config{Prompts: []string{"a sks dog playing soccer", "a dog in the snow"}, Epochs: 1, SamplesPerEpoch: 16, BatchSize: 8,
		SamplesPerPrompt: 4, Steps: 3, Guidance: 3, Width: 64, Height: 64, Seed: 9, NoGradCheckpointing: true, MicroBatch: 8}
	tr, err := New(c, borderBrightness{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Release()
	tr.pairNoise = 2 // x_T and step 0's z
	ss, err := tr.sampleEpoch(context.Background(), measureEpoch0, func() {})
	tr.pairNoise = 0
	if err != nil {
		t.Fatal(err)
	}
	same := func(a, b []float32) bool {
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	for m := 0; m < len(ss); m += 2 {
		a, b := ss[m], ss[m+1]
		if !same(a.Latents[0], b.Latents[0]) || !same(a.Latents[1], b.Latents[1]) || same(a.Latents[2], b.Latents[2]) {
			t.Fatalf("pair %d: x_T shared %v, after step 0 %v, after step 1 %v (want true, true, false)", m/2,
				same(a.Latents[0], b.Latents[0]), same(a.Latents[1], b.Latents[1]), same(a.Latents[2], b.Latents[2]))
		}
	}
	if m := 2; same(ss[0].Latents[0], ss[m].Latents[0]) {
		t.Fatal("different pairs share x_T")
	}
	s, err := tr.MeasureInitialNoise(context.Background(), 32, cfg.Steps-1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", s)
	if s.Pairs != 16 || !(s.Within > 0) || s.Share < 0.9 {
		t.Errorf("sharing all but the last step: %+v (want a share over 0.9)", s)
	}
	if _, err := tr.MeasureInitialNoise(context.Background(), 32, cfg.Steps, nil); err == nil {
		t.Error("sharing every step: no error")
	}
}
