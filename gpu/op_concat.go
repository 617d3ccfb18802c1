package gpu

import "fmt"

// Concat and Split along any dimension (U-Net skip connections join
// channels; GEGLU splits the last dimension in two). Both directions of
// both ops are block copies with row strides: shaders/strided_copy.wgsl.
// Reference: ref.Concat / ref.Split (and their backwards).

// concatGeom views shape as [outer, shape[dim], inner].
func concatGeom(shape []int, dim int) (outer, inner int) {
	return numel(shape[:dim]), numel(shape[dim+1:])
}

func normDim(dim, rank int, op string) int {
	if dim < 0 {
		dim += rank
	}
	if dim < 0 || dim >= rank {
		panic(fmt.Sprintf("gpu: %s: dimension %d out of range for rank %d", op, dim, rank))
	}
	return dim
}

// Concat joins xs along dim (negative counts from the end); all other
// dimensions must agree. The gradient of each input is its slice of the
// output's gradient.
func (e *Engine) Concat(dim int, xs ...*Tensor) *Tensor {
	if len(xs) == 0 {
		panic("gpu: Concat of no tensors")
	}
	xs = append([]*Tensor(nil), xs...) // the backward keeps them
	rank := len(xs[0].shape)
	dim = normDim(dim, rank, "Concat")
	shape := append([]int(nil), xs[0].shape...)
	shape[dim] = 0
	for _, x := range xs {
		bad := len(x.shape) != rank
		for d := 0; !bad && d < rank; d++ {
			bad = d != dim && x.shape[d] != xs[0].shape[d]
		}
		if bad {
			panic(fmt.Sprintf("gpu: Concat along %d of %v and %v", dim, xs[0].shape, x.shape))
		}
		shape[dim] += x.shape[dim]
	}
	outer, inner := concatGeom(shape, dim)
	row := shape[dim] * inner // row stride of the result
	out := e.alloc(shape...)
	off := 0
	for _, x := range xs {
		cols := x.shape[dim] * inner
		e.copyBlock(x, 0, cols, out, off, row, outer, cols)
		off += cols
	}
	e.record(out, xs, func(g *Tensor) {
		off := 0
		for _, x := range xs {
			cols := x.shape[dim] * inner
			if x.requiresGrad {
				dx := e.alloc(x.shape...)
				e.copyBlock(g, off, row, dx, 0, cols, outer, cols)
				x.accumulate(dx)
			}
			off += cols
		}
	})
	return out
}

// Split cuts x along dim (negative counts from the end) into pieces of the
// given sizes, which must sum to x's extent there; it is Concat's inverse.
// The pieces are new tensors. x's gradient is the concatenation of the
// pieces' gradients, with zeros for pieces that did not reach the loss.
func (e *Engine) Split(x *Tensor, dim int, sizes ...int) []*Tensor {
	dim = normDim(dim, len(x.shape), "Split")
	sum := 0
	for _, s := range sizes {
		if s < 0 {
			panic(fmt.Sprintf("gpu: Split of %v into negative size %d", x.shape, s))
		}
		sum += s
	}
	if sum != x.shape[dim] {
		panic(fmt.Sprintf("gpu: Split of %v along %d into %v: sizes sum to %d", x.shape, dim, sizes, sum))
	}
	outer, inner := concatGeom(x.shape, dim)
	row := x.shape[dim] * inner
	pieces := make([]*Tensor, len(sizes))
	offs := make([]int, len(sizes)) // column offset of each piece in x's rows
	off := 0
	for i, s := range sizes {
		shape := append([]int(nil), x.shape...)
		shape[dim] = s
		pieces[i] = e.alloc(shape...)
		offs[i] = off
		e.copyBlock(x, off, row, pieces[i], 0, s*inner, outer, s*inner)
		off += s * inner
	}
	// One node per piece. The pieces' nodes are consecutive on the tape and
	// everything that consumed a piece was recorded after them, so when the
	// first of them runs backward every piece's gradient is final: that
	// node takes all of them at once (clearing the others' Grad, so their
	// nodes are skipped) and builds x's gradient with one copy per piece.
	for i := range pieces {
		i := i
		e.record(pieces[i], []*Tensor{x}, func(g *Tensor) {
			grads := make([]*Tensor, len(pieces))
			missing := false
			for j, p := range pieces {
				switch {
				case j == i:
					grads[j] = g // borrowed
				case p.Grad != nil:
					grads[j] = p.Grad // taken
					p.Grad = nil
				default:
					missing = true
				}
			}
			var dx *Tensor
			if missing {
				dx = e.Zeros(x.shape...)
			} else {
				dx = e.alloc(x.shape...)
			}
			for j, gj := range grads {
				if gj == nil {
					continue
				}
				cols := sizes[j] * inner
				e.copyBlock(gj, 0, cols, dx, offs[j], row, outer, cols)
				if j != i {
					gj.Release()
				}
			}
			x.accumulate(dx)
		})
	}
	return pieces
}

// copyBlock copies rows x cols elements from src (starting at element
// srcOff, rows srcStride apart) to dst (dstOff, dstStride), in as many
// dispatches as keep each window within one binding.
func (e *Engine) copyBlock(src *Tensor, srcOff, srcStride int, dst *Tensor, dstOff, dstStride int, rows, cols int) {
	if rows == 0 || cols == 0 {
		return
	}
	k := Kernel{File: "strided_copy.wgsl", Entry: "main"}
	run := func(r0, nr, c0, nc int) {
		sb, so := e.span(src, srcOff+r0*srcStride+c0, (nr-1)*srcStride+nc)
		db, do := e.span(dst, dstOff+r0*dstStride+c0, (nr-1)*dstStride+nc)
		n := nr * nc
		e.Dispatch(k, Params{n, nc, so, srcStride, do, dstStride}, e.Grid1D(n, 256), sb, db)
	}
	lim := e.maxSpan()
	per := rows // rows per dispatch
	for _, t := range []struct {
		t      *Tensor
		stride int
	}{{src, srcStride}, {dst, dstStride}} {
		if t.t.Bytes() > e.maxBinding {
			if cols > lim {
				per = 0
			} else if t.stride > 0 {
				per = min(per, (lim-cols)/t.stride+1)
			}
		}
	}
	if per >= 1 {
		steps(rows, per, func(r0, nr int) { run(r0, nr, 0, cols) })
		return
	}
	// Rows longer than a binding: one row at a time, in pieces.
	for r := 0; r < rows; r++ {
		steps(cols, lim, func(c0, nc int) { run(r, 1, c0, nc) })
	}
}
