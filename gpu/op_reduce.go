package gpu

import "fmt"

// Reductions: Sum and Mean over axes (keepdim=false), SumAll, MeanAll.
// Forward: shaders/reduce_fwd.wgsl (parallel tree reduction in workgroup
// memory, one or two passes); backward: shaders/reduce_bwd.wgsl (broadcast
// g back). Reference: ref.Reduce / ref.ReduceBackward.
//
// Reducing over every axis gives a tensor of shape [] (rank 0, one
// element), as in PyTorch; it works with Engine.Backward and Item.
//
// Tensors larger than one storage binding are reduced in slabs along their
// outermost non-trivial dimension (after merging), so one slice along it
// must fit a binding (32M floats at 128 MiB), and for the backward the
// output must fit one; both panic with a clear message otherwise.

// Sum returns x summed over axes (negative axes count from the end); the
// reduced dimensions are removed. No axes sums everything, giving shape [].
func (e *Engine) Sum(x *Tensor, axes ...int) *Tensor { return e.reduce(x, axes, false) }

// Mean returns the mean of x over axes (see Sum). The mean over zero
// elements is NaN.
func (e *Engine) Mean(x *Tensor, axes ...int) *Tensor { return e.reduce(x, axes, true) }

// SumAll returns the sum of every element, shape [].
func (e *Engine) SumAll(x *Tensor) *Tensor { return e.reduce(x, nil, false) }

// MeanAll returns the mean of every element, shape [].
func (e *Engine) MeanAll(x *Tensor) *Tensor { return e.reduce(x, nil, true) }

// reducePlan is a reduction in canonical form: size-1 dimensions dropped
// and neighbouring dimensions of the same kind (kept or reduced) merged, so
// a rank-8 tensor has at most 4 kept and 4 reduced groups.
type reducePlan struct {
	dims []int  // merged dimensions, row-major
	red  []bool // whether each merged dimension is reduced
	out  []int  // output shape (reduced axes removed)
	k, r int    // output elements, reduced positions per output
}

func planReduce(shape []int, axes []int) reducePlan {
	if len(shape) > maxRank {
		panic(fmt.Sprintf("gpu: reducing a rank-%d tensor (at most %d)", len(shape), maxRank))
	}
	reduced := make([]bool, len(shape))
	if len(axes) == 0 {
		for i := range reduced {
			reduced[i] = true
		}
	}
	for _, a := range axes {
		ax := a
		if ax < 0 {
			ax += len(shape)
		}
		if ax < 0 || ax >= len(shape) {
			panic(fmt.Sprintf("gpu: reduction axis %d out of range for %v", a, shape))
		}
		if reduced[ax] {
			panic(fmt.Sprintf("gpu: reduction axis %d given twice for %v", a, shape))
		}
		reduced[ax] = true
	}
	p := reducePlan{out: []int{}, k: 1, r: 1}
	for i, d := range shape {
		if reduced[i] {
			p.r *= d
		} else {
			p.out = append(p.out, d)
			p.k *= d
		}
		if d == 1 {
			continue
		}
		if n := len(p.dims); n > 0 && p.red[n-1] == reduced[i] {
			p.dims[n-1] *= d
			continue
		}
		p.dims = append(p.dims, d)
		p.red = append(p.red, reduced[i])
	}
	return p
}

// split returns the kept and reduced dimensions with their input strides,
// dim0 overriding the size of merged dimension 0 (for slabs; -1: as is).
func (p reducePlan) split(dim0 int) (kd, ks, rd, rs []int) {
	stride := 1
	strides := make([]int, len(p.dims))
	for i := len(p.dims) - 1; i >= 0; i-- {
		strides[i] = stride
		stride *= p.dims[i]
	}
	for i, d := range p.dims {
		if i == 0 && dim0 >= 0 {
			d = dim0
		}
		if p.red[i] {
			rd, rs = append(rd, d), append(rs, strides[i])
		} else {
			kd, ks = append(kd, d), append(ks, strides[i])
		}
	}
	return
}

func (e *Engine) reduce(x *Tensor, axes []int, mean bool) *Tensor {
	pl := planReduce(x.shape, axes)
	out := e.alloc(pl.out...)
	scale := float32(1)
	if mean {
		scale = 1 / float32(pl.r) // +Inf for r == 0: 0 * Inf = NaN, as PyTorch
	}
	e.reduceInto(x, pl, out, scale)
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		e.expandInto(g, pl, dx, scale)
		x.accumulate(dx)
	})
	return out
}

// reduceInto writes scale * (x reduced by pl) into out. An x larger than one
// binding is cut into slabs along its outermost merged dimension: a kept
// one maps each slab to its own window of out; a reduced one gives a row
// of partial sums per slab, reduced in a last pass.
func (e *Engine) reduceInto(x *Tensor, pl reducePlan, out *Tensor, scale float32) {
	if pl.k == 0 {
		return
	}
	if x.Bytes() <= e.maxBinding {
		kd, ks, rd, rs := pl.split(-1)
		e.reduceCore(x.bind(), 0, kd, ks, rd, rs, out.bind(), 0, scale)
		return
	}
	n0, s0 := pl.dims[0], prod(pl.dims[1:])
	rows := (e.maxElems() - 64) / s0
	if rows < 1 {
		panic(fmt.Sprintf("gpu: reducing %v over a %s tensor: one slice of %d elements exceeds the %s binding limit", pl.dims, fmtBytes(x.Bytes()), s0, fmtBytes(e.maxBinding)))
	}
	if !pl.red[0] {
		kin := pl.k / n0
		for i0 := 0; i0 < n0; i0 += rows {
			i1 := min(n0, i0+rows)
			kd, ks, rd, rs := pl.split(i1 - i0)
			xb, xd := x.span(i0*s0, (i1-i0)*s0)
			ob, od := out.span(i0*kin, (i1-i0)*kin)
			e.reduceCore(xb, xd, kd, ks, rd, rs, ob, od, scale)
		}
		return
	}
	nslab := (n0 + rows - 1) / rows
	part, err := e.NewTensor(Scratch, nslab, pl.k) // [slabs, K]
	if err != nil {
		panic(err)
	}
	defer part.Release()
	if part.Bytes() > e.maxBinding {
		panic(fmt.Sprintf("gpu: reducing %v: %d partial rows of %d outputs exceed the %s binding limit", pl.dims, nslab, pl.k, fmtBytes(e.maxBinding)))
	}
	for j := 0; j < nslab; j++ {
		i0, i1 := j*rows, min(n0, (j+1)*rows)
		kd, ks, rd, rs := pl.split(i1 - i0)
		xb, xd := x.span(i0*s0, (i1-i0)*s0)
		e.reduceCore(xb, xd, kd, ks, rd, rs, part.bind(), j*pl.k, 1)
	}
	e.reduceCore(part.bind(), 0, []int{pl.k}, []int{1}, []int{nslab}, []int{pl.k}, out.bind(), 0, scale)
}

// reduceCore dispatches reduce_fwd.wgsl over one binding of x (offsets
// from xoff) into out (from ooff). A long reduction over few outputs is
// split into segments whose partial sums a second pass reduces, so that
// e.g. 4M elements into one output keep thousands of threads busy.
func (e *Engine) reduceCore(xb Binding, xoff int, kd, ks, rd, rs []int, ob Binding, ooff int, scale float32) {
	if len(kd) > 4 || len(rd) > 4 {
		panic(fmt.Sprintf("gpu: reduction with %d kept and %d reduced groups (at most 4 each)", len(kd), len(rd)))
	}
	k, r := prod(kd), prod(rd)
	if k == 0 {
		return
	}
	s, seg := 1, r
	if r >= 8192 && k < 4096 {
		// Segments of >= 2048 positions (8 per thread), at most ~8192
		// partial sums in all.
		s = min((r+2047)/2048, max(1, 8192/k))
		seg = (r + s - 1) / s
		s = (r + seg - 1) / seg
	}
	if s == 1 {
		e.reduceDispatch(xb, xoff, kd, ks, rd, rs, ob, ooff, 1, seg, scale)
		return
	}
	part, err := e.NewTensor(Scratch, k, s) // [K, S]
	if err != nil {
		panic(err)
	}
	e.reduceDispatch(xb, xoff, kd, ks, rd, rs, part.bind(), 0, s, seg, 1)
	e.reduceDispatch(part.bind(), 0, []int{k}, []int{s}, []int{s}, []int{1}, ob, ooff, 1, s, scale)
	part.Release()
}

func (e *Engine) reduceDispatch(xb Binding, xoff int, kd, ks, rd, rs []int, ob Binding, ooff, s, seg int, scale float32) {
	k, r := prod(kd), prod(rd)
	tpo := min(256, nextPow2((seg+3)/4))
	slots := k * s
	groups := (slots + 256/tpo - 1) / (256 / tpo)
	p := Params{slots, s, seg, r, tpo, len(kd), len(rd), xoff, ooff, scale, 0, 0}
	for _, v := range [][]int{kd, ks, rd, rs} {
		var a [4]int
		copy(a[:], v)
		for _, x := range a {
			p = append(p, uint32(x))
		}
	}
	e.Dispatch(Kernel{File: "reduce_fwd.wgsl", Entry: "main"}, p, e.Grid1D(groups*256, 256), xb, ob)
}

// expandInto writes dx = scale * g broadcast back over pl's reduced
// dimensions (the backward of a reduction).
func (e *Engine) expandInto(g *Tensor, pl reducePlan, dx *Tensor, scale float32) {
	if g.Bytes() > e.maxBinding {
		panic(fmt.Sprintf("gpu: the gradient of a reduction with a %s output (over one binding) is not supported", fmtBytes(g.Bytes())))
	}
	gs := make([]int, len(pl.dims))
	stride := 1
	for i := len(pl.dims) - 1; i >= 0; i-- {
		if !pl.red[i] {
			gs[i] = stride
			stride *= pl.dims[i]
		}
	}
	e.chunks(dx.n, func(from, count int) {
		p := Params{count, from, len(pl.dims), scale}
		p = packDims(p, pl.dims)
		p = packDims(p, gs)
		e.Dispatch(Kernel{File: "reduce_bwd.wgsl", Entry: "main"}, p, e.Grid1D(count, 256), g.bind(), dx.window(from, count))
	})
}
