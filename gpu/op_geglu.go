package gpu

import "fmt"

// GEGLU (diffusers' GEGLU activation after its Linear projection).
// Forward: shaders/geglu_fwd.wgsl; backward: shaders/geglu_bwd.wgsl; both
// use the exact-GELU helpers of shaders/erf_lib.wgsl.
// Reference: ref.GEGLU / ref.GEGLUBackward.

// GEGLU splits x [..., 2F] in its last dimension into h (the first half)
// and gate (the second) and returns h * gelu(gate) [..., F], with the exact
// erf GELU — diffusers' `hidden_states, gate = proj(x).chunk(2, dim=-1);
// return hidden_states * F.gelu(gate)`. Tensors larger than one storage
// binding are split into windows of whole rows.
func (e *Engine) GEGLU(x *Tensor) *Tensor {
	if len(x.shape) == 0 || x.shape[len(x.shape)-1]%2 != 0 {
		panic(fmt.Sprintf("gpu: GEGLU needs an even last dimension, got %v", x.shape))
	}
	f := x.shape[len(x.shape)-1] / 2
	oshape := append(append([]int(nil), x.shape[:len(x.shape)-1]...), f)
	out := e.alloc(oshape...)
	if out.n == 0 {
		return out
	}
	// An output window of count elements touches rows spanning at most
	// 2*count + 4F elements of x, plus up to 63 for alignment.
	lim := (e.maxElems() - 4*f - 128) / 2
	if lim < 64 {
		panic(fmt.Sprintf("gpu: GEGLU rows of %d elements do not fit the %s binding limit", 2*f, fmtBytes(e.maxBinding)))
	}
	chunksOf(out.n, lim, 64, func(from, count int) {
		r0, r1 := from/f, (from+count-1)/f+1
		xb, xd := x.span(r0*2*f, (r1-r0)*2*f)
		e.Dispatch(unaryKernel("geglu_fwd.wgsl"), Params{count, from, f, r0*2*f - xd}, e.Grid1D(count, 256),
			xb, out.window(from, count))
	})
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		// A dx window of count elements touches rows spanning at most
		// count + 4F elements of x and half that of g.
		lim := e.maxElems() - 4*f - 128
		if lim < 64 {
			panic(fmt.Sprintf("gpu: GEGLU backward rows of %d elements do not fit the %s binding limit", 2*f, fmtBytes(e.maxBinding)))
		}
		chunksOf(dx.n, lim, 64, func(from, count int) {
			r0, r1 := from/(2*f), (from+count-1)/(2*f)+1
			xb, xd := x.span(r0*2*f, (r1-r0)*2*f)
			gb, gd := g.span(r0*f, (r1-r0)*f)
			e.Dispatch(unaryKernel("geglu_bwd.wgsl"), Params{count, from, f, r0*2*f - xd, r0*f - gd}, e.Grid1D(count, 256),
				gb, xb, dx.window(from, count))
		})
		x.accumulate(dx)
	})
	return out
}
