package ddpo

import (
	"math/rand/v2"
	"testing"
)

// TestStepBaseline: with x_0-prediction rewards that carry the final
// reward (plus noise) the baseline removes most of each advantage's
// spread (the fitted scale is the regression slope); with predictions
// unrelated to the reward it removes almost nothing; the prompt's mean
// prediction never enters (centring per prompt).
func TestStepBaseline(t *testing.T) {
	const seed, n = 5, 400
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	samples := make([]*Sample, n)
	adv := make([]float64, n)
	for i := range samples {
		prompt := i / 4 % 7
		a := rng.NormFloat64()
		adv[i] = a
		samples[i] = &Sample{Prompt: prompt, Reward: a, StepRewards: []float64{
			10*float64(prompt) + 0.5*a + 0.1*rng.NormFloat64(), // informative, per-prompt offset
			10*float64(prompt) + rng.NormFloat64(),             // unrelated
		}}
	}
	stepBaseline(samples, adv, 5)
	var v0, v1, va float64
	for i, s := range samples {
		if len(s.StepAdv) != 2 {
			t.Fatalf("sample %d: %d step advantages", i, len(s.StepAdv))
		}
		v0 += s.StepAdv[0] * s.StepAdv[0]
		v1 += s.StepAdv[1] * s.StepAdv[1]
		va += adv[i] * adv[i]
	}
	// Step 0: adv = 2 (P - 0.1 e) + within-prompt centring error; the
	// residual is about 0.2 e plus the part of adv's own prompt mean left in P.
	t.Logf("variance: advantages %.3f, after the baseline %.3f (informative), %.3f (unrelated)", va/n, v0/n, v1/n)
	if v0/va > 0.4 {
		t.Errorf("informative prediction: %.3f of the variance left", v0/va)
	}
	if v1/va < 0.97 || v1/va > 1 {
		t.Errorf("unrelated prediction: %.3f of the variance left (want just under 1)", v1/va)
	}
	// Clipping at ±5 (step 1's baseline is about 0).
	adv[0] = 50
	stepBaseline(samples, adv, 5)
	if samples[0].StepAdv[1] != 5 {
		t.Errorf("clipped advantage %g, want 5", samples[0].StepAdv[1])
	}
}
