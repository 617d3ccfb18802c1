package gpu

import "fmt"

// ConvKernelEnv selects the kernel for 3x3, stride-1, pad-1 convolutions:
// "direct" (shaders/conv2d_fwd_direct.wgsl, register-blocked for CPU
// adapters, the default there) or "gemm" (the implicit-GEMM kernels, the
// default on GPUs and the only kernels for every other geometry, and for
// dW). See op_conv2d.go and conv3x3Direct for the measurements.
const ConvKernelEnv = "INSTRUCTBOOTH_CONV"

// convDirectTile is the number of output channels, and of consecutive
// pixels of one output row, that one invocation of the direct kernel owns.
const convDirectTile = 16

// convDirectWG is the direct kernel's workgroup size (one SIMD group on
// llvmpipe).
const convDirectWG = 8

// conv3x3Direct reports whether the convolution c runs through the direct
// kernel: a 3x3 kernel, stride 1, pad 1, on a CPU adapter (or when
// ConvKernelEnv says "direct"). The forward and dX of such convolutions
// take it whatever their size: it beat the GEMM kernels at every shape
// measured (see op_conv2d.go), down to 4x4 planes.
//
// Design (shaders/conv2d_fwd_direct.wgsl has the details): each invocation
// owns 16 output channels x 16 consecutive pixels of one output row in
// sixteen mat4x4 accumulators and, per (input channel, kernel row), loads
// the 18 input pixels it needs once for all three kernel columns: 6 vec4 x
// loads and 12 vec4 weight loads for 768 FMAs, with no workgroup memory.
// The weights are arranged once per call (conv2d_pack_w.wgsl, ~3-4 ms for
// 320x320x3x3, ~3% of that convolution) into tiles of 16 output channels
// whose rows are contiguous, so each invocation streams through its tile.
// Measured alternatives, same machine (ratios to the GEMM kernel in the
// same process; the machine's load moves them by ~30%): weights as one
// row-major [Cin*9, Cout] matrix (steps of 3 rows, 7.7 KB at 640 channels)
// 0.9-1.3x at 1x640x16x16, where the tiles give 1.4-2.4x; 16 x 32 pixels
// per invocation slower at 3 of 4 shapes (by up to 40%) and ~15 s to JIT;
// the three kernel columns as a runtime loop that shifts the input row in
// registers ~10-15% slower. Invocations are numbered over (pixel block,
// channel tile) in one linear order rather than a 2-D grid so that planes
// with fewer than 8 pixel blocks (4x4: one block per row) still fill the
// SIMD lanes. Cold JIT of the kernel is ~2 s on the contended machine (the
// GEMM kernels ~1.6 s).
func (e *Engine) conv3x3Direct(c convGeom) bool {
	return e.cpuKernel(ConvKernelEnv, "direct", "gemm") && c.kh == 3 && c.kw == 3 && c.stride == 1 && c.pad == 1
}

// directConv is one run of conv2d_fwd_direct.wgsl: out [N, co, H, W] (+)=
// conv3x3(in [N, ci, H, W], wp) (+ bias), wp packed by packConv3x3.
type directConv struct {
	n, ci, co, h, w int
	cp              int // wp's row length: co rounded up to convDirectTile
	s               convSplit
}

// planDirect returns the plan for a direct convolution from in (ci
// channels) to out (co channels), or false when it needs a split the
// kernel cannot follow (then the caller runs the GEMM kernels): packed
// weights larger than one binding, or output-channel blocks narrower than a
// tile.
func (e *Engine) planDirect(n, ci, co, h, w int, in, out *Tensor) (directConv, bool) {
	d := directConv{n: n, ci: ci, co: co, h: h, w: w, cp: ceilDiv(co, convDirectTile) * convDirectTile}
	if uint64(ci*9*d.cp)*4 > e.maxBinding {
		return d, false
	}
	d.s = e.convSplitFor(n, in, ci, h*w, out, co, h*w, n)
	if d.s.bc < co {
		// Output-channel blocks must start at a tile of packed weights.
		d.s.bc -= d.s.bc % convDirectTile
		if d.s.bc == 0 {
			return d, false
		}
	}
	return d, true
}

// packConv3x3 returns w [Cout, Cin, 3, 3] arranged for the direct kernel
// as a Scratch tensor [d.cp/16, d.ci*9, 16] (see conv2d_pack_w.wgsl): for
// the forward (flip false) rows are input channels and columns output
// channels; for the input gradient (flip true) the reverse, with the
// kernel flipped.
func (e *Engine) packConv3x3(w *Tensor, d directConv, flip bool) *Tensor {
	cin := w.shape[1]
	wp, err := e.NewTensor(Scratch, d.cp/convDirectTile, d.ci*9, convDirectTile) // [cp/16, ci*9, 16]
	if err != nil {
		panic(err)
	}
	sc, sa, fl := cin*9, 9, 0
	if flip {
		sc, sa, fl = 9, cin*9, 1
	}
	ct := d.cp / convDirectTile
	e.Dispatch(Kernel{File: "conv2d_pack_w.wgsl", Entry: "main"},
		Params{d.ci * 9, ct, d.co, sc, sa, fl, 0, 0}, e.Grid1D(ct*d.ci*9*4, 64), w.bind(), wp.bind())
	return wp
}

// runDirect dispatches the direct kernel over d's split: in and out are
// [N, ci, H, W] and [N, co, H, W]; bias [co] or nil.
func (e *Engine) runDirect(d directConv, in, wp, bias, out *Tensor) {
	k := Kernel{File: "conv2d_fwd_direct.wgsl", Entry: "main", Consts: fmt.Sprintf("const XVEC: bool = %v;", d.w%4 == 0)}
	plane := d.h * d.w
	segs := ceilDiv(d.w, convDirectTile)
	wb := wp.bind()
	bb := wb
	if bias != nil {
		bb = bias.bind()
	}
	steps(d.n, d.s.nb, func(n0, nb int) {
		steps(d.co, d.s.bc, func(co0, coc int) {
			ob, ooff := e.spanBlock(out, n0, nb, d.co, co0, coc, plane)
			steps(d.ci, d.s.ac, func(ci0, cic int) {
				xb, xoff := e.spanBlock(in, n0, nb, d.ci, ci0, cic, plane)
				flags := 0
				if ci0 > 0 {
					flags |= 2
				} else if bias != nil {
					flags |= 1
				}
				npb := nb * d.h * segs
				p := Params{coc, cic, d.ci * 9, ci0,
					co0, npb, segs, flags,
					d.h, d.w, xoff, d.ci * plane,
					ooff, d.co * plane, 0, 0}
				e.Dispatch(k, p, e.Grid1D(npb*ceilDiv(coc, convDirectTile), convDirectWG),
					bindVec4(xb), wb, bb, ob)
			})
		})
	})
}

// conv2dForwardDirect runs the forward of c through the direct kernel and
// reports whether it could (see planDirect).
func (e *Engine) conv2dForwardDirect(c convGeom, x, w, bias, out *Tensor) bool {
	d, ok := e.planDirect(c.n, c.cin, c.cout, c.h, c.w, x, out)
	if !ok {
		return false
	}
	wp := e.packConv3x3(w, d, false)
	e.runDirect(d, x, wp, bias, out)
	wp.Release()
	return true
}

// conv2dBackwardInputDirect writes dx [N, Cin, H, W] from g [N, Cout, H, W]
// through the direct kernel, and reports whether it could: the input
// gradient of a 3x3 stride-1 pad-1 convolution is the 3x3 stride-1 pad-1
// convolution of g with w transposed to [Cin, Cout, 3, 3] and flipped in
// both spatial dimensions.
func (e *Engine) conv2dBackwardInputDirect(c convGeom, g, w, dx *Tensor) bool {
	d, ok := e.planDirect(c.n, c.cout, c.cin, c.h, c.w, g, dx)
	if !ok {
		return false
	}
	wp := e.packConv3x3(w, d, true)
	e.runDirect(d, g, wp, nil, dx)
	wp.Release()
	return true
}
