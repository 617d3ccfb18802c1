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
	planes := numel(x.shape[:r-2])
	e.planeChunks(planes, max(h*w, ho*wo), func(p0, np int) {
		in, ind := e.span(x, p0*h*w, np*h*w)
		o, outd := e.span(out, p0*ho*wo, np*ho*wo)
		e.Dispatch(Kernel{File: "pad2d_fwd.wgsl", Entry: "main"}, Params{np * ho * wo, h, w, ho, wo, top, left, ind, outd}, e.Grid1D(np*ho*wo, 256), in, o)
	})
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		e.planeChunks(planes, max(h*w, ho*wo), func(p0, np int) {
			gb, gd := e.span(g, p0*ho*wo, np*ho*wo)
			db, dd := e.span(dx, p0*h*w, np*h*w)
			e.Dispatch(Kernel{File: "pad2d_bwd.wgsl", Entry: "main"}, Params{np * h * w, h, w, ho, wo, top, left, gd, dd}, e.Grid1D(np*h*w, 256), gb, db)
		})
		x.accumulate(dx)
	})
	return out
}

// planeChunks calls f over [0, planes) in runs of whole planes of at most
// plane elements each, so that every run's window (plus 63 elements of
// alignment slack) fits one binding.
func (e *Engine) planeChunks(planes, plane int, f func(p0, np int)) {
	per := max(1, (e.maxElems()-64)/max(plane, 1))
	if plane+64 > e.maxElems() {
		panic(fmt.Sprintf("gpu: one plane of %d floats exceeds the %s binding limit", plane, fmtBytes(e.maxBinding)))
	}
	for p0 := 0; p0 < planes; p0 += per {
		f(p0, min(per, planes-p0))
	}
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
