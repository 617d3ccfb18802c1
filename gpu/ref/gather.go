package ref

// Gather returns x indexed by ids (shape idsShape) along dim: shape
// x.Shape[:dim] + idsShape + x.Shape[dim+1:].
func Gather(x *T, dim int, ids []int, idsShape []int) *T {
	outer, inner := Numel(x.Shape[:dim]), Numel(x.Shape[dim+1:])
	nd := x.Shape[dim]
	shape := append(append(append([]int(nil), x.Shape[:dim]...), idsShape...), x.Shape[dim+1:]...)
	out := New(shape...)
	m := len(ids)
	for o := 0; o < outer; o++ {
		for q, id := range ids {
			for k := 0; k < inner; k++ {
				out.Data[(o*m+q)*inner+k] = x.Data[(o*nd+id)*inner+k]
			}
		}
	}
	return out
}

// GatherBackward scatter-adds g into a zero tensor of x's shape.
func GatherBackward(xShape []int, dim int, ids []int, g *T) *T {
	outer, inner := Numel(xShape[:dim]), Numel(xShape[dim+1:])
	nd := xShape[dim]
	dx := New(xShape...)
	m := len(ids)
	for o := 0; o < outer; o++ {
		for q, id := range ids {
			for k := 0; k < inner; k++ {
				dx.Data[(o*nd+id)*inner+k] += g.Data[(o*m+q)*inner+k]
			}
		}
	}
	return dx
}
