package ddpo

import "math"

// advantages turns an epoch's rewards into clipped advantages with tr
// (which records them), and with Config.StepBaseline also sets each
// sample's per-step advantages (StepAdv).
func (t *Trainer) advantages(tr *StatTracker, samples []*Sample) ([]float64, error) {
	cfg := t.cfg
	texts := make([]string, len(samples))
	rewards := make([]float64, len(samples))
	for i, s := range samples {
		texts[i], rewards[i] = cfg.Prompts[s.Prompt], s.Reward
	}
	adv, err := tr.Update(texts, rewards)
	if err != nil {
		return nil, err
	}
	if cfg.StepBaseline {
		stepBaseline(samples, adv, cfg.AdvClip)
	}
	for i := range adv {
		adv[i] = clamp(adv[i], cfg.AdvClip)
	}
	return adv, nil
}

func clamp(v, c float64) float64 { return math.Max(-c, math.Min(c, v)) }

// stepBaseline sets every sample's.StepAdv[k] = clamp(adv_i - beta_k P_ik):
// P_ik is the reward of sample i's x_0 prediction at step k
// (StepRewards[k]) minus the mean of those of the samples with the same
// prompt, and beta_k = sum_i adv_i P_ik / sum_i P_ik^2 the least-squares
// fit of the advantages on them, so the baseline removes as much of the
// advantage's variance as a multiple of P can (and nothing when the
// predictions carry no information: beta near 0). adv are the unclipped
// per-sample advantages, already centred per prompt.
func stepBaseline(samples []*Sample, adv []float64, advClip float64) {
	if len(samples) == 0 {
		return
	}
	steps := len(samples[0].StepRewards)
	byPrompt := map[int][]int{}
	for i, s := range samples {
		byPrompt[s.Prompt] = append(byPrompt[s.Prompt], i)
	}
	p := make([][]float64, len(samples)) // [sample][step]
	for i := range p {
		p[i] = make([]float64, steps)
	}
	for _, idx := range byPrompt {
		for k := 0; k < steps; k++ {
			var m float64
			for _, i := range idx {
				m += samples[i].StepRewards[k] / float64(len(idx))
			}
			for _, i := range idx {
				p[i][k] = samples[i].StepRewards[k] - m
			}
		}
	}
	for _, s := range samples {
		s.StepAdv = make([]float64, steps)
	}
	for k := 0; k < steps; k++ {
		var num, den float64
		for i := range samples {
			num += adv[i] * p[i][k]
			den += p[i][k] * p[i][k]
		}
		beta := 0.0
		if den > 0 {
			beta = num / den
		}
		for i, s := range samples {
			s.StepAdv[k] = clamp(adv[i]-beta*p[i][k], advClip)
		}
	}
}
