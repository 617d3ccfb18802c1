package gpu

import "fmt"

// Helpers shared by the row-structured ops (softmax, layer norm, group norm,
// attention): splitting rows into binding-sized chunks, choosing a
// workgroup size for a per-row reduction, and keeping forward statistics
// alive exactly as long as the backward may need them.

// rowChunks calls f over rows [0, rows) in chunks [r0, r0+nr) such that,
// for every row-structured operand i holding lens[i] elements per row, the
// window [r0*lens[i], (r0+nr)*lens[i]) fits one storage binding and starts
// on a 256-byte boundary. maxRows (0: no limit) caps nr, e.g. at the
// per-dimension workgroup limit when rows map to a grid dimension.
// It panics when a single row of some operand exceeds the binding limit.
func (e *Engine) rowChunks(rows int, lens []int, maxRows int, f func(r0, nr int)) {
	if rows == 0 {
		return
	}
	maxElems := int(e.maxBinding / 4)
	fits := maxRows <= 0 || rows <= maxRows
	for _, l := range lens {
		if rows*l > maxElems {
			fits = false
		}
	}
	if fits {
		f(0, rows)
		return
	}
	step := 1 // rows per chunk must be a multiple of step
	nr := rows
	if maxRows > 0 && nr > maxRows {
		nr = maxRows
	}
	for _, l := range lens {
		if l == 0 {
			continue
		}
		step = lcm(step, 64/gcd(l, 64))
		if m := maxElems / l; m < nr {
			nr = m
		}
	}
	nr -= nr % step
	if nr == 0 {
		panic(fmt.Sprintf("gpu: rows of %v elements do not fit the %s binding limit in aligned chunks", lens, fmtBytes(e.maxBinding)))
	}
	for r0 := 0; r0 < rows; r0 += nr {
		f(r0, min(nr, rows-r0))
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b int) int { return a / gcd(a, b) * b }

// rowEntry picks the entry point of a per-row reduction kernel (one
// workgroup per row of n elements): main64 for short rows, so they do not
// idle most of a big workgroup, main256 for long ones. Such shaders have
// both entries because this wgpu accepts only literal workgroup sizes.
func rowEntry(n int) string {
	if n <= 512 {
		return "main64"
	}
	return "main256"
}

// rowGrid returns workgroup counts for one workgroup per row, folding into
// y past the per-dimension limit (row = wid.x + wid.y * nwg.x).
func (e *Engine) rowGrid(rows int) [3]uint32 { return e.Grid1D(rows, 1) }

// keepForBackward ties tensors that an op's backward reads but no caller
// owns (saved statistics such as mean and rstd) to the op's recorded node.
// They must have been passed to record among the inputs, which pins them;
// here they are marked to be freed when the tape is reset. When nothing was
// recorded (no gradient needed, or NoGrad) they are released at once.
func (e *Engine) keepForBackward(out *Tensor, saved ...*Tensor) {
	for _, s := range saved {
		if s == nil {
			continue
		}
		if out.node == nil {
			s.Release()
		} else {
			s.orphan = true
		}
	}
}

// orDummy returns t's binding, or the first element of other when t is nil
// (for optional operands that a kernel skips through a flag: the binding
// must still exist).
func orDummy(t, other *Tensor) Binding {
	if t == nil {
		return other.window(0, 1)
	}
	return t.bind()
}
