package ref

// Concat joins xs along dim; all other dimensions must agree.
func Concat(dim int, xs ...*T) *T {
	shape := append([]int(nil), xs[0].Shape...)
	shape[dim] = 0
	for _, x := range xs {
		shape[dim] += x.Shape[dim]
	}
	out := New(shape...)
	outer, inner := Numel(shape[:dim]), Numel(shape[dim+1:])
	for o := 0; o < outer; o++ {
		at := o * shape[dim] * inner
		for _, x := range xs {
			blk := x.Shape[dim] * inner
			copy(out.Data[at:at+blk], x.Data[o*blk:(o+1)*blk])
			at += blk
		}
	}
	return out
}

// Split cuts x along dim into pieces of the given sizes (summing to
// x.Shape[dim]); it is the inverse of Concat.
func Split(x *T, dim int, sizes ...int) []*T {
	outer, inner := Numel(x.Shape[:dim]), Numel(x.Shape[dim+1:])
	out := make([]*T, len(sizes))
	off := 0
	for i, s := range sizes {
		shape := append([]int(nil), x.Shape...)
		shape[dim] = s
		out[i] = New(shape...)
		for o := 0; o < outer; o++ {
			src := (o*x.Shape[dim] + off) * inner
			copy(out[i].Data[o*s*inner:(o+1)*s*inner], x.Data[src:src+s*inner])
		}
		off += s
	}
	return out
}

// ConcatBackward slices g, the gradient of Concat's output, back into the
// inputs' gradients (sizes are the inputs' extents along dim).
func ConcatBackward(dim int, g *T, sizes ...int) []*T { return Split(g, dim, sizes...) }

// SplitBackward concatenates the pieces' gradients gs into x's gradient; a
// nil entry (a piece that did not reach the loss) counts as zeros.
func SplitBackward(x *T, dim int, gs []*T, sizes ...int) *T {
	full := make([]*T, len(gs))
	for i, g := range gs {
		if g == nil {
			shape := append([]int(nil), x.Shape...)
			shape[dim] = sizes[i]
			g = New(shape...)
		}
		full[i] = g
	}
	return Concat(dim, full...)
}
