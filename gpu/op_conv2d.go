package gpu

import "fmt"

// 2-D convolution (PyTorch's conv2d without dilation or groups) as implicit
// GEMMs that never build an im2col buffer.
// Forward: shaders/conv2d_fwd.wgsl; backward: shaders/conv2d_bwd_input.wgsl
// (dX, a transposed convolution), shaders/conv2d_bwd_weight.wgsl (dW) and
// shaders/conv2d_bwd_bias.wgsl (dBias).
// Reference: ref.Conv2d / ref.Conv2dBackward.
//
// Kernel choice. On CPU adapters (lavapipe) 3x3, stride-1, pad-1
// convolutions (most of SD's) run their forward and their dX through
// shaders/conv2d_fwd_direct.wgsl instead (op_conv2d_direct.go; the dX of
// such a convolution is such a convolution of g with flipped, transposed
// weights); dW, dBias and every other geometry use the GEMM kernels, as do
// GPUs. ConvKernelEnv (INSTRUCTBOOTH_CONV=direct|gemm) overrides the choice.
// On llvmpipe every load from storage or workgroup memory is a loop over
// the SIMD lanes: the GEMM kernel stages both operands through workgroup
// memory with barriers, gathering x element by element with im2col index
// math, while the direct kernel keeps a 16-channel x 16-pixel block per
// invocation in registers and needs 18 vec4 loads per 768 FMAs. Measured
// on the 2-core machine with another training job running (cmd/bench -op
// conv3x3, 1x320x32x32, Cout 320, ratio to the engine's 1024^3 matmul in the
// same run; the old and new binaries run in turn): GEMM 0.64-0.66x
// (5-12 GFLOP/s), direct 1.53-1.80x (18-34 GFLOP/s); conv3x3-bwd (forward,
// dX and dW) 0.53x -> 0.79x. In one process, alternating the kernels:
// forward 2.0-2.7x the GEMM kernel's rate at 1x320x32x32, 2.1-2.4x at
// 1x640x16x16, 1.6-2.0x at 1x1280x8x8, 2.5-3.1x at 1x1280x4x4, 2.0x at
// 2x64x15x15 (W not a multiple of 4: scalar row loads); forward + dX
// 2.0-3.1x at the same shapes.

// convGeom is the geometry of one convolution.
type convGeom struct {
	n, cin, h, w      int // x [N, Cin, H, W]
	cout, kh, kw      int // w [Cout, Cin, KH, KW]
	ho, wo            int // out [N, Cout, Ho, Wo]
	stride, pad       int
	hasBias           bool
	planeIn, planeOut int // H*W, Ho*Wo
	// unalignedW is set when input-channel blocks start at weights that are
	// not vec4-aligned although w's rows are (see conv2dForward).
	unalignedW bool
}

// consts specialises the conv kernels for the kernel size, stride and pad,
// and says where vec4 loads are possible: AVEC, w's rows (Cin*KH*KW floats)
// are multiples of 4 (conv2d_fwd.wgsl); GVEC, an output plane (Ho*Wo) is
// (conv2d_bwd_weight.wgsl).
func (c convGeom) consts() string {
	return fmt.Sprintf("const KH: u32 = %du; const KW: u32 = %du; const KHW: u32 = %du; const STRIDE: u32 = %du; const PAD: u32 = %du; const AVEC: bool = %v; const GVEC: bool = %v;",
		c.kh, c.kw, c.kh*c.kw, c.stride, c.pad, c.cin*c.khw()%4 == 0 && !c.unalignedW, c.planeOut%4 == 0)
}

// bindVec4 returns b grown to whole vec4s, for shaders that read it as
// array<vec4<f32>>; pool buffers are whole 256-byte blocks, so the bytes
// exist (they are never used).
func bindVec4(b Binding) Binding {
	b.size = (b.size + 15) &^ 15
	if b.off+b.size > b.buf.size {
		panic(fmt.Sprintf("gpu: a vec4 binding of %d bytes at %d overruns its %d-byte buffer", b.size, b.off, b.buf.size))
	}
	return b
}

func (c convGeom) khw() int { return c.kh * c.kw }

// gemmTile is the blocking of the conv GEMM kernels: each of the 8x8
// threads of a workgroup owns a (4*tm4) x (4*tn4) block of the output tile,
// and K advances bk at a time through workgroup memory. On CPU drivers every
// vector load from memory costs a loop over the SIMD lanes, so the largest
// blocks (16x16) are fastest there (bk 32 measured ~5% faster than 16 on
// lavapipe); on GPUs 8x8 blocks keep register pressure reasonable. Small M
// gets fewer rows.
type gemmTile struct{ tm4, tn4, bk int }

func (e *Engine) gemmTileFor(m int) gemmTile {
	t := gemmTile{tm4: 2, tn4: 2, bk: 16}
	if e.Info.Type == "cpu" {
		t = gemmTile{tm4: 4, tn4: 4, bk: 32}
	}
	for t.tm4 > 1 && 32*t.tm4/2 >= m {
		t.tm4 /= 2
	}
	// Both tiles, BK floats per row and column, must fit workgroup memory.
	for t.bk > 4 && (t.bm()+t.bn())*t.bk*4 > int(e.Limits.MaxComputeWorkgroupStorageSize) {
		t.bk /= 2
	}
	return t
}

func (t gemmTile) bm() int { return 32 * t.tm4 }
func (t gemmTile) bn() int { return 32 * t.tn4 }

func (t gemmTile) consts() string {
	return fmt.Sprintf("const TM4: u32 = %du; const TN4: u32 = %du; const BM: u32 = %du; const BN: u32 = %du; const BK: u32 = %du; const QS: u32 = %du; const TA_LEN: u32 = %du; const TB_LEN: u32 = %du;",
		t.tm4, t.tn4, t.bm(), t.bn(), t.bk, t.bk/4, t.bm()*t.bk/4, t.bn()*t.bk/4)
}

// Conv2d returns conv2d(x, w) + bias with PyTorch's semantics:
//
//	out[n, co, oh, ow] = bias[co] + sum_{ci, kh, kw} w[co, ci, kh, kw] * x[n, ci, oh*stride-pad+kh, ow*stride-pad+kw]
//
// x [N, Cin, H, W], w [Cout, Cin, KH, KW], bias [Cout] or nil; the result is
// [N, Cout, Ho, Wo] with Ho = (H + 2*pad - KH)/stride + 1 (likewise Wo).
// Pixels outside x read as zero. Gradients flow to x, w and bias. w, bias
// and dW must each fit one storage binding; x and out may be larger.
func (e *Engine) Conv2d(x, w, bias *Tensor, stride, pad int) *Tensor {
	if len(x.shape) != 4 || len(w.shape) != 4 {
		panic(fmt.Sprintf("gpu: Conv2d needs x [N, Cin, H, W] and w [Cout, Cin, KH, KW], got %v and %v", x.shape, w.shape))
	}
	c := convGeom{
		n: x.shape[0], cin: x.shape[1], h: x.shape[2], w: x.shape[3],
		cout: w.shape[0], kh: w.shape[2], kw: w.shape[3], stride: stride, pad: pad,
		hasBias: bias != nil,
	}
	if w.shape[1] != c.cin {
		panic(fmt.Sprintf("gpu: Conv2d: x %v has %d channels, w %v expects %d", x.shape, c.cin, w.shape, w.shape[1]))
	}
	if stride < 1 || pad < 0 || c.kh < 1 || c.kw < 1 || c.cin < 1 {
		panic(fmt.Sprintf("gpu: Conv2d: bad stride %d, pad %d or kernel %v", stride, pad, w.shape))
	}
	if bias != nil && (len(bias.shape) != 1 || bias.shape[0] != c.cout) {
		panic(fmt.Sprintf("gpu: Conv2d: bias %v for %d output channels", bias.shape, c.cout))
	}
	c.ho = (c.h+2*pad-c.kh)/stride + 1
	c.wo = (c.w+2*pad-c.kw)/stride + 1
	if c.h+2*pad < c.kh || c.w+2*pad < c.kw {
		panic(fmt.Sprintf("gpu: Conv2d: kernel %dx%d larger than the padded %dx%d input", c.kh, c.kw, c.h+2*pad, c.w+2*pad))
	}
	c.planeIn, c.planeOut = c.h*c.w, c.ho*c.wo
	if w.Bytes() > e.maxBinding {
		panic(fmt.Sprintf("gpu: Conv2d: weights %v (%s) exceed one binding (%s)", w.shape, fmtBytes(w.Bytes()), fmtBytes(e.maxBinding)))
	}
	out := e.alloc(c.n, c.cout, c.ho, c.wo) // [N, Cout, Ho, Wo]
	e.conv2dForward(c, x, w, bias, out)
	e.record(out, []*Tensor{x, w, bias}, func(g *Tensor) {
		if x.requiresGrad {
			dx := e.alloc(x.shape...) // [N, Cin, H, W]
			e.conv2dBackwardInput(c, g, w, dx)
			x.accumulate(dx)
		}
		if w.requiresGrad {
			dw := e.alloc(w.shape...) // [Cout, Cin, KH, KW]
			e.conv2dBackwardWeight(c, g, x, dw)
			w.accumulate(dw)
		}
		if bias != nil && bias.requiresGrad {
			db := e.alloc(c.cout) // [Cout]
			e.conv2dBackwardBias(c, g, db)
			bias.accumulate(db)
		}
	})
	return out
}

// span binds elements [from, from+count) of t: the whole tensor when it fits
// one binding, else a window starting at the 64-element boundary at or below
// from. It returns the binding and the index of element `from` inside it.
func (e *Engine) span(t *Tensor, from, count int) (Binding, int) {
	if t.Bytes() <= e.maxBinding {
		return t.bind(), from
	}
	start := from &^ 63
	return t.window(start, from+count-start), from - start
}

// maxSpan is the most elements a span may cover so that its aligned window
// still fits one binding.
func (e *Engine) maxSpan() int { return int(e.maxBinding/4) - 64 }

// convSplit says how to cut a convolution over two [N, C, plane] tensors a
// and b (the operand and result of one GEMM) so that every window fits one
// binding: nb images at a time, and when one image is too large, ac channels
// of a and bc channels of b at a time. maxImgs caps nb.
type convSplit struct{ nb, ac, bc int }

func (e *Engine) convSplitFor(n int, a *Tensor, ca, planeA int, b *Tensor, cb, planeB int, maxImgs int) convSplit {
	lim := e.maxSpan()
	s := convSplit{nb: min(n, maxImgs), ac: ca, bc: cb}
	if a.Bytes() > e.maxBinding {
		s.nb = min(s.nb, lim/(ca*planeA))
	}
	if b.Bytes() > e.maxBinding {
		s.nb = min(s.nb, lim/(cb*planeB))
	}
	if s.nb >= 1 {
		return s
	}
	s.nb = 1
	if a.Bytes() > e.maxBinding {
		s.ac = min(ca, lim/planeA)
	}
	if b.Bytes() > e.maxBinding {
		s.bc = min(cb, lim/planeB)
	}
	if s.ac < 1 || s.bc < 1 || maxImgs < 1 {
		panic(fmt.Sprintf("gpu: Conv2d: one channel plane (%d or %d elements) exceeds a binding of %s", planeA, planeB, fmtBytes(e.maxBinding)))
	}
	return s
}

// steps calls f(from, count) over [0, total) in steps of step.
func steps(total, step int, f func(from, count int)) {
	for from := 0; from < total; from += step {
		f(from, min(step, total-from))
	}
}

// spanBlock binds channels [c0, c0+cc) of images [n0, n0+nb) of t, an
// [N, C, plane] tensor (whole images when nb > 1), and returns the index of
// its first element inside the binding.
func (e *Engine) spanBlock(t *Tensor, n0, nb, c, c0, cc, plane int) (Binding, int) {
	return e.span(t, (n0*c+c0)*plane, ((nb-1)*c+cc)*plane)
}

func (e *Engine) conv2dForward(c convGeom, x, w, bias, out *Tensor) {
	if e.conv3x3Direct(c) && e.conv2dForwardDirect(c, x, w, bias, out) {
		return
	}
	s := e.convSplitFor(c.n, x, c.cin, c.planeIn, out, c.cout, c.planeOut, c.n)
	if s.ac < c.cin && s.ac*c.khw()%4 != 0 {
		// Keep every input-channel block's weights vec4-aligned.
		if s.ac >= 4 {
			s.ac &^= 3
		} else {
			c.unalignedW = true
		}
	}
	tile := e.gemmTileFor(min(c.cout, s.bc))
	k := Kernel{File: "conv2d_fwd.wgsl", Entry: "main", Consts: c.consts() + tile.consts()}
	wb := bindVec4(w.bind())
	bb := w.bind()
	if bias != nil {
		bb = bias.bind()
	}
	steps(c.n, s.nb, func(n0, nb int) {
		steps(c.cout, s.bc, func(co0, coc int) {
			ob, ooff := e.spanBlock(out, n0, nb, c.cout, co0, coc, c.planeOut)
			steps(c.cin, s.ac, func(ci0, cic int) {
				xb, xoff := e.spanBlock(x, n0, nb, c.cin, ci0, cic, c.planeIn)
				flags := 0
				if ci0 > 0 {
					flags |= 2
				} else if bias != nil {
					flags |= 1
				}
				ncol := nb * c.planeOut
				steps(ncol, 65535*tile.bn(), func(j0, cols int) {
					p := Params{coc, ncol, cic * c.khw(), c.cin * c.khw(),
						ci0, co0, j0, flags,
						c.h, c.w, c.ho, c.wo,
						xoff, c.cin * c.planeIn, ooff, c.cout * c.planeOut}
					e.Dispatch(k, p, [3]uint32{uint32(ceilDiv(cols, tile.bn())), uint32(ceilDiv(coc, tile.bm())), 1}, xb, wb, bb, ob)
				})
			})
		})
	})
}

// conv2dBackwardInput writes dx = dL/dx [N, Cin, H, W] from g [N, Cout, Ho, Wo].
func (e *Engine) conv2dBackwardInput(c convGeom, g, w, dx *Tensor) {
	if e.conv3x3Direct(c) && e.conv2dBackwardInputDirect(c, g, w, dx) {
		return
	}
	s := e.convSplitFor(c.n, g, c.cout, c.planeOut, dx, c.cin, c.planeIn, c.n)
	tile := e.gemmTileFor(min(c.cin, s.bc))
	k := Kernel{File: "conv2d_bwd_input.wgsl", Entry: "main", Consts: c.consts() + tile.consts()}
	steps(c.n, s.nb, func(n0, nb int) {
		steps(c.cin, s.bc, func(ci0, cic int) {
			xb, xoff := e.spanBlock(dx, n0, nb, c.cin, ci0, cic, c.planeIn)
			steps(c.cout, s.ac, func(co0, coc int) {
				gb, goff := e.spanBlock(g, n0, nb, c.cout, co0, coc, c.planeOut)
				flags := 0
				if co0 > 0 {
					flags = 2
				}
				ncol := nb * c.planeIn
				steps(ncol, 65535*tile.bn(), func(j0, cols int) {
					p := Params{cic, ncol, coc * c.khw(), c.cin * c.khw(),
						ci0, co0, j0, flags,
						c.h, c.w, c.ho, c.wo,
						goff, c.cout * c.planeOut, xoff, c.cin * c.planeIn}
					e.Dispatch(k, p, [3]uint32{uint32(ceilDiv(cols, tile.bn())), uint32(ceilDiv(cic, tile.bm())), 1}, gb, w.bind(), xb)
				})
			})
		})
	})
}

// conv2dBackwardWeight writes dw = dL/dw [Cout, Cin, KH, KW] from g and x.
func (e *Engine) conv2dBackwardWeight(c convGeom, g, x, dw *Tensor) {
	s := e.convSplitFor(c.n, x, c.cin, c.planeIn, g, c.cout, c.planeOut, c.n)
	tile := e.gemmTileFor(min(c.cout, s.bc))
	k := Kernel{File: "conv2d_bwd_weight.wgsl", Entry: "main", Consts: c.consts() + tile.consts()}
	steps(c.n, s.nb, func(n0, nb int) {
		flags := 0
		if n0 > 0 {
			flags = 2
		}
		steps(c.cout, s.bc, func(co0, coc int) {
			gb, goff := e.spanBlock(g, n0, nb, c.cout, co0, coc, c.planeOut)
			gb = bindVec4(gb)
			steps(c.cin, s.ac, func(ci0, cic int) {
				xb, xoff := e.spanBlock(x, n0, nb, c.cin, ci0, cic, c.planeIn)
				ncol := cic * c.khw()
				p := Params{coc, ncol, nb * c.planeOut, c.cin * c.khw(),
					ci0, co0, 0, flags,
					c.h, c.w, c.ho, c.wo,
					goff, c.cout * c.planeOut, xoff, c.cin * c.planeIn}
				e.Dispatch(k, p, [3]uint32{uint32(ceilDiv(ncol, tile.bn())), uint32(ceilDiv(coc, tile.bm())), 1}, gb, xb, dw.bind())
			})
		})
	})
}

// conv2dBackwardBias writes db = dL/dbias [Cout]: g summed over N, Ho, Wo.
func (e *Engine) conv2dBackwardBias(c convGeom, g, db *Tensor) {
	s := e.convSplitFor(c.n, g, c.cout, c.planeOut, g, c.cout, c.planeOut, c.n)
	k := Kernel{File: "conv2d_bwd_bias.wgsl", Entry: "main"}
	steps(c.n, s.nb, func(n0, nb int) {
		flags := 0
		if n0 > 0 {
			flags = 2
		}
		steps(c.cout, s.bc, func(co0, coc int) {
			gb, goff := e.spanBlock(g, n0, nb, c.cout, co0, coc, c.planeOut)
			p := Params{coc, nb, c.planeOut, co0, goff, c.cout * c.planeOut, flags, 0}
			e.Dispatch(k, p, [3]uint32{uint32(coc), 1, 1}, gb, db.bind())
		})
	})
}
