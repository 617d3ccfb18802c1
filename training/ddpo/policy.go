package ddpo

import (
	"fmt"
	"math"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/sched"
	"github.com/instructbooth/instructbooth/model/sd"
)

// GuidedEps is the policy's noise prediction for a training batch whose
// elements sit at different timesteps: x [N, C, h, w], t[i] the model
// timestep of element i, ctx the conditioning — [2N, L, D] = [uncond;
// cond] with classifier-free guidance (scale > 1), else [N, L, D] cond.
// With guidance the U-Net runs once on [x; x] (both halves through any
// attached LoRA, as ddpo-pytorch trains) and
// eps = eps_u + scale (eps_c - eps_u). Recorded on the tape. [N, C, h, w]
func GuidedEps(u *sd.UNet, x *gpu.Tensor, t []float32, ctx *gpu.Tensor, scale float32) *gpu.Tensor {
	e := u.W.E
	n := x.Dim(0)
	s := e.Scope()
	var out *gpu.Tensor
	if scale <= 1 {
		out = u.Forward(x, e.FromSlice(t, n), ctx)
	} else {
		tt := append(append(make([]float32, 0, 2*n), t...), t...)
		raw := u.Forward(e.Concat(0, x, x), e.FromSlice(tt, 2*n), ctx) // [2N, C, h, w]
		p := e.Split(raw, 0, n, n)
		out = e.Add(p[0], e.Scale(e.Sub(p[1], p[0]), scale))
	}
	s.Close(out)
	return out
}

// StepLogProb is sched.Step.LogProb for a batch whose elements take
// different DDIM steps: element i goes from x[i] to prev[i] with the
// coefficients cs[i] and noise prediction eps[i]; the result [N] is
// DDPO's log-probability, the MEAN over (C, h, w) of the Gaussian
// log-density of prev under N(A x + B eps, sigma^2). Every sigma must be
// positive. Recorded on the tape. x, eps, prev [N, C, h, w].
func StepLogProb(e *gpu.Engine, x, eps, prev *gpu.Tensor, cs []sched.DDIMCoeffs) (*gpu.Tensor, error) {
	n := len(cs)
	if x == nil || eps == nil || prev == nil || len(x.Shape()) != 4 || x.Dim(0) != n ||
		!sameShape(x.Shape(), eps.Shape()) || !sameShape(x.Shape(), prev.Shape()) {
		return nil, fmt.Errorf("ddpo: step log-probability needs x, eps and prev of one shape [%d, C, h, w], got %v, %v, %v", n, x, eps, prev)
	}
	a := make([]float32, n)
	b := make([]float32, n)
	k := make([]float32, n)
	c := make([]float32, n)
	for i, s := range cs {
		if !(s.Sigma > 0) {
			return nil, fmt.Errorf("ddpo: step from t=%d has sigma %g; log-probabilities need eta > 0", s.T, s.Sigma)
		}
		sg := float64(s.Sigma)
		a[i], b[i] = s.A, s.B
		k[i] = float32(-1 / (2 * sg * sg))
		c[i] = float32(-math.Log(sg) - sched.LogProbConst)
	}
	s := e.Scope()
	mean := e.Add(e.Mul(x, e.FromSlice(a, n, 1, 1, 1)), e.Mul(eps, e.FromSlice(b, n, 1, 1, 1)))
	d := e.Sub(prev, mean)
	sq := e.Mean(e.Mul(d, d), 1, 2, 3) // [N]
	lp := e.Add(e.Mul(sq, e.FromSlice(k, n)), e.FromSlice(c, n))
	s.Close(lp)
	return lp, nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
