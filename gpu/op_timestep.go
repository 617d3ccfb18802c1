package gpu

import (
	"fmt"
	"math"
)

// Sinusoidal timestep embedding (diffusers get_timestep_embedding).
// Forward: shaders/timestep_fwd.wgsl; backward: shaders/timestep_bwd.wgsl.
// Reference: ref.TimestepEmbedding / ref.TimestepEmbeddingBackward.

// TimestepEmbedding returns the sinusoidal embedding [N, dim] of the float
// timesteps t [N], with diffusers' semantics: half = dim/2,
// freq_j = exp(-ln(maxPeriod) * j / (half - downscaleFreqShift)),
// emb = [sin(t*freq) | cos(t*freq)] ([cos | sin] when flipSinToCos), and a
// zero last column when dim is odd. Stable Diffusion 1.x uses
// flipSinToCos=true, downscaleFreqShift=0, maxPeriod=10000. t may require a
// gradient: the backward gives dL/dt[n] = sum_c g[n, c] * d emb[n, c] / dt.
// Accurate for |t * freq| below ~25000 (see the shader's range reduction).
func (e *Engine) TimestepEmbedding(t *Tensor, dim int, flipSinToCos bool, downscaleFreqShift float32, maxPeriod float32) *Tensor {
	if len(t.shape) != 1 {
		panic(fmt.Sprintf("gpu: TimestepEmbedding needs timesteps of shape [N], got %v", t.shape))
	}
	if dim < 1 || maxPeriod <= 0 {
		panic(fmt.Sprintf("gpu: TimestepEmbedding with dim %d, max period %g", dim, maxPeriod))
	}
	n := t.n
	out := e.alloc(n, dim) // [N, dim]
	if out.Bytes() > e.maxBinding {
		panic(fmt.Sprintf("gpu: TimestepEmbedding output %v over one binding", out.shape))
	}
	negLogP := float32(-math.Log(float64(maxPeriod)))
	params := func(count int) Params {
		return Params{count, dim, dim / 2, flipSinToCos, downscaleFreqShift, negLogP}
	}
	e.Dispatch(Kernel{File: "timestep_fwd.wgsl", Entry: "main"}, params(n*dim), e.Grid1D(n*dim, 256), t.bind(), out.bind())
	e.record(out, []*Tensor{t}, func(g *Tensor) {
		dt := e.alloc(n)
		e.Dispatch(Kernel{File: "timestep_bwd.wgsl", Entry: "main"}, params(n), e.Grid1D(n, 64), g.bind(), t.bind(), dt.bind())
		t.accumulate(dt)
	})
	return out
}
