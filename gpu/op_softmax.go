package gpu

// Softmax over the last dimension.
// Forward: shaders/softmax_fwd.wgsl; backward: shaders/softmax_bwd.wgsl.
// Reference: ref.Softmax / ref.SoftmaxBackward.

// Softmax returns exp(x - max) / sum(exp(x - max)) along the last dimension
// of x (any rank >= 1, rows of any length). The backward computes
// dx = y * (g - sum(g * y)) from the output y.
func (e *Engine) Softmax(x *Tensor) *Tensor {
	if len(x.shape) == 0 {
		panic("gpu: Softmax of a scalar (needs at least one dimension)")
	}
	y := e.alloc(x.shape...) // same shape as x
	cols := x.Dim(-1)
	if x.n == 0 {
		return y
	}
	rows := x.n / cols
	k := Kernel{File: "softmax_fwd.wgsl", Entry: rowEntry(cols)}
	e.rowChunks(rows, []int{cols}, 0, func(r0, nr int) {
		e.Dispatch(k, Params{nr, cols}, e.rowGrid(nr), x.window(r0*cols, nr*cols), y.window(r0*cols, nr*cols))
	})
	e.record(y, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		kb := Kernel{File: "softmax_bwd.wgsl", Entry: k.Entry}
		e.rowChunks(rows, []int{cols}, 0, func(r0, nr int) {
			w := func(t *Tensor) Binding { return t.window(r0*cols, nr*cols) }
			e.Dispatch(kb, Params{nr, cols}, e.rowGrid(nr), w(g), w(y), w(dx))
		})
		x.accumulate(dx)
	})
	return y
}
