package ref

import "math"

// AdamW is torch.optim.AdamW for one parameter, with the gradient scaled by
// clip (the global-norm clip factor, 1 when clipping is off).
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	M, V                               []float64
	Step                               int
}

// Update applies one step to p in place.
func (o *AdamW) Update(p, grad []float64, clip float64) {
	if o.M == nil {
		o.M = make([]float64, len(p))
		o.V = make([]float64, len(p))
	}
	o.Step++
	bc1 := 1 - math.Pow(o.Beta1, float64(o.Step))
	bc2 := 1 - math.Pow(o.Beta2, float64(o.Step))
	for i := range p {
		g := grad[i] * clip
		p[i] *= 1 - o.LR*o.WeightDecay
		o.M[i] = o.Beta1*o.M[i] + (1-o.Beta1)*g
		o.V[i] = o.Beta2*o.V[i] + (1-o.Beta2)*g*g
		p[i] -= o.LR * (o.M[i] / bc1) / (math.Sqrt(o.V[i]/bc2) + o.Eps)
	}
}

// ClipFactor is torch.nn.utils.clip_grad_norm_'s scale for the given
// gradients: min(1, maxNorm / (norm + 1e-6)), and the norm itself.
func ClipFactor(grads [][]float64, maxNorm float64) (factor, norm float64) {
	s := 0.0
	for _, g := range grads {
		for _, v := range g {
			s += v * v
		}
	}
	norm = math.Sqrt(s)
	if maxNorm <= 0 {
		return 1, norm
	}
	return math.Min(1, maxNorm/(norm+1e-6)), norm
}
