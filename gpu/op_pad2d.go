package gpu

import "fmt"

// Pad2d zero-pads the last two dimensions of x [..., H, W] by top, bottom,
// left and right (non-negative): [..., H+top+bottom, W+left+right]. The VAE
// encoder's downsampler pads right and bottom only.
// Forward shaders/pad2d_fwd.wgsl, backward (a crop) shaders/pad2d_bwd.wgsl;
// reference ref.Pad2d.
func (e *Engine) Pad2d(x *Tensor, top, bottom, left, right int) *Tensor {
	r := len(x.shape)
	if r < 2 || top < 0 || bottom < 0 || left < 0 || right < 0 {
		panic(fmt.Sprintf("gpu: Pad2d of %v by (%d, %d, %d, %d)", x.shape, top, bottom, left, right))
	}
	h, w := x.shape[r-2], x.shape[r-1]
	ho, wo := h+top+bottom, w+left+right
	shape := append(append([]int(nil), x.shape[:r-2]...), ho, wo)
	out := e.alloc(shape...)
	e.Dispatch(Kernel{File: "pad2d_fwd.wgsl", Entry: "main"}, Params{out.n, h, w, ho, wo, top, left}, e.Grid1D(out.n, 256), x.bind(), out.bind())
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		e.Dispatch(Kernel{File: "pad2d_bwd.wgsl", Entry: "main"}, Params{dx.n, h, w, ho, wo, top, left}, e.Grid1D(dx.n, 256), g.bind(), dx.bind())
		x.accumulate(dx)
	})
	return out
}

// Clamp limits x to [lo, hi]; the gradient passes where lo <= x <= hi.
// Forward shaders/clamp_fwd.wgsl, backward shaders/clamp_bwd.wgsl;
// reference ref.Clamp.
func (e *Engine) Clamp(x *Tensor, lo, hi float32) *Tensor {
	out := e.alloc(x.shape...)
	e.chunks(x.n, func(from, count int) {
		e.Dispatch(Kernel{File: "clamp_fwd.wgsl", Entry: "main"}, Params{count, lo, hi}, e.Grid1D(count, 256), x.window(from, count), out.window(from, count))
	})
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		e.chunks(x.n, func(from, count int) {
			e.Dispatch(Kernel{File: "clamp_bwd.wgsl", Entry: "main"}, Params{count, lo, hi}, e.Grid1D(count, 256), x.window(from, count), g.window(from, count), dx.window(from, count))
		})
		x.accumulate(dx)
	})
	return out
}
