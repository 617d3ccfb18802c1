package ddpo

import "math"

// Surrogate is DDPO's clipped policy-gradient objective for one timestep
// of a batch, computed in float64 on the CPU from the log-probabilities
// the engine produced:
//
//	ratio_i = exp(newLP_i - oldLP_i)
//	loss    = mean_i max(-A_i ratio_i, -A_i clip(ratio_i, 1-c, 1+c))
//
// Grad[i] is d loss / d newLP_i (d ratio/d newLP = ratio): -A_i ratio_i / N
// where the unclipped term is the larger, else 0 (the clipped ratio is
// constant outside [1-c, 1+c]; inside, both terms agree). ApproxKL is
// ddpo-pytorch's 0.5 mean((newLP - oldLP)^2), ClipFrac the fraction with
// |ratio - 1| > c, MaxLogRatio the largest |newLP - oldLP|.
type Surrogate struct {
	Loss, ApproxKL, ClipFrac, MaxLogRatio float64
	Grad                                  []float64
}

// ClippedSurrogate evaluates the objective for advantages adv (already
// clipped) and clip range c.
func ClippedSurrogate(newLP, oldLP []float32, adv []float64, c float64) Surrogate {
	n := float64(len(newLP))
	s := Surrogate{Grad: make([]float64, len(newLP))}
	for i := range newLP {
		lr := float64(newLP[i]) - float64(oldLP[i])
		r := math.Exp(lr)
		a := adv[i]
		un := -a * r
		cl := -a * math.Min(math.Max(r, 1-c), 1+c)
		if un >= cl {
			s.Loss += un
			s.Grad[i] = -a * r / n
		} else {
			s.Loss += cl
		}
		s.ApproxKL += 0.5 * lr * lr
		if math.Abs(r-1) > c {
			s.ClipFrac++
		}
		if m := math.Abs(lr); m > s.MaxLogRatio || math.IsNaN(m) {
			s.MaxLogRatio = m
		}
	}
	s.Loss /= n
	s.ApproxKL /= n
	s.ClipFrac /= n
	return s
}
