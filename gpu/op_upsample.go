package gpu

import "fmt"

// Nearest-neighbour 2x upsampling (the U-Net's and VAE's Upsample blocks).
// Forward: shaders/upsample_fwd.wgsl; backward: shaders/upsample_bwd.wgsl.
// Reference: ref.Upsample2x / ref.Upsample2xBackward.

// Upsample2x returns x [N, C, H, W] upsampled to [N, C, 2H, 2W] by
// repeating every pixel in a 2x2 block. Its gradient sums each 2x2 block.
func (e *Engine) Upsample2x(x *Tensor) *Tensor {
	if len(x.shape) != 4 {
		panic(fmt.Sprintf("gpu: Upsample2x needs [N, C, H, W], got %v", x.shape))
	}
	n, c, h, w := x.shape[0], x.shape[1], x.shape[2], x.shape[3]
	out := e.alloc(n, c, 2*h, 2*w) // [N, C, 2H, 2W]
	e.upsample("upsample_fwd.wgsl", x, out, n*c, h, w)
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...) // [N, C, H, W]
		e.upsample("upsample_bwd.wgsl", g, dx, n*c, h, w)
		x.accumulate(dx)
	})
	return out
}

// upsample runs one direction over planes [P, H, W] (small side) and
// [P, 2H, 2W] (large side), whole planes per dispatch so each window fits
// one binding. The forward reads the small side and writes the large one,
// the backward the reverse; `in` is what the kernel reads.
func (e *Engine) upsample(file string, in, out *Tensor, planes, h, w int) {
	small, large := in, out
	if file == "upsample_bwd.wgsl" {
		small, large = out, in
	}
	hw := h * w
	per := planes
	if large.Bytes() > e.maxBinding {
		per = e.maxSpan() / (4 * hw)
		if per < 1 {
			panic(fmt.Sprintf("gpu: Upsample2x: one %dx%d output plane exceeds a binding of %s", 2*h, 2*w, fmtBytes(e.maxBinding)))
		}
	}
	steps(planes, per, func(p0, np int) {
		sb, soff := e.span(small, p0*hw, np*hw)
		lb, loff := e.span(large, p0*4*hw, np*4*hw)
		n := np * 4 * hw // forward: one thread per output element
		ib, ob := sb, lb
		if file == "upsample_bwd.wgsl" {
			n = np * hw // backward: one thread per dx element
			ib, ob = lb, sb
		}
		e.Dispatch(Kernel{File: file, Entry: "main"}, Params{n, h, w, soff, loff}, e.Grid1D(n, 256), ib, ob)
	})
}
