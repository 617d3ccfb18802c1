package gpu

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// TestAdamW_matchesReference runs several AdamW steps with and without
// global-norm clipping and compares parameters with the float64 reference.
func TestAdamW_matchesReference(t *testing.T) {
	e := engine(t)
	r, seed := seeded(t)
	for _, maxNorm := range []float64{0, 0.5} {
		shapes := [][]int{{37, 5}, {301}, {1}}
		var params []*Tensor
		var host [][]float64
		var refs []*ref.AdamW
		for i, s := range shapes {
			d := randData(r, ref.Numel(s))
			params = append(params, e.Param(fmt.Sprintf("p%d", i), f32s(d), s...))
			host = append(host, d)
			refs = append(refs, &ref.AdamW{LR: 1e-2, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.01})
		}
		opt := e.NewAdamW(params, 1e-2)
		opt.Beta2 = 0.99
		opt.MaxGradNorm = float32(maxNorm)
		for step := 0; step < 4; step++ {
			var grads [][]float64
			for i, p := range params {
				g := randData(r, p.Len())
				grads = append(grads, g)
				p.Grad = e.FromSlice(f32s(g), p.Shape()...)
				_ = i
			}
			clip, norm := ref.ClipFactor(grads, maxNorm)
			for i := range params {
				refs[i].Update(host[i], grads[i], clip)
			}
			opt.Step()
			gn, err := opt.GradNorm()
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(float64(gn)-norm) > 1e-4*norm {
				t.Errorf("seed %d step %d: grad norm %g, want %g", seed, step, gn, norm)
			}
			opt.ZeroGrad()
		}
		for i, p := range params {
			compare(t, fmt.Sprintf("adamw maxNorm=%g param %d (seed %d)", maxNorm, i, seed), p.MustRead(), host[i], 1e-5, 1e-4)
		}
		// Save, perturb, restore: the moments come back exactly.
		var buf bytes.Buffer
		if err := opt.SaveState(&buf); err != nil {
			t.Fatal(err)
		}
		m0 := opt.m[0].MustRead()
		opt.m[0].Write(make([]float32, opt.m[0].Len()))
		if err := opt.LoadState(bytes.NewReader(buf.Bytes())); err != nil {
			t.Fatal(err)
		}
		compare(t, "restored first moment", opt.m[0].MustRead(), f64s(m0), 0, 0)
		if opt.Steps() != 4 {
			t.Errorf("restored step %d, want 4", opt.Steps())
		}
		if err := opt.LoadState(bytes.NewReader(buf.Bytes()[:20])); err == nil {
			t.Error("truncated optimizer state loaded without error")
		}
		opt.Release()
		for _, p := range params {
			p.Release()
		}
	}
}

func f64s(x []float32) []float64 {
	o := make([]float64, len(x))
	for i, v := range x {
		o[i] = float64(v)
	}
	return o
}
