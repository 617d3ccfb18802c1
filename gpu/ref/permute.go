package ref

// Permute returns x with out.Shape[i] = x.Shape[perm[i]].
func Permute(x *T, perm []int) *T {
	shape := make([]int, len(perm))
	for i, p := range perm {
		shape[i] = x.Shape[p]
	}
	out := New(shape...)
	xstr := make([]int, len(x.Shape))
	s := 1
	for d := len(x.Shape) - 1; d >= 0; d-- {
		xstr[d] = s
		s *= x.Shape[d]
	}
	for i := range out.Data {
		rem, src := i, 0
		for d := len(shape) - 1; d >= 0; d-- {
			src += (rem % shape[d]) * xstr[perm[d]]
			rem /= shape[d]
		}
		out.Data[i] = x.Data[src]
	}
	return out
}

// PermuteBackward permutes g back by the inverse permutation.
func PermuteBackward(perm []int, g *T) *T {
	inv := make([]int, len(perm))
	for i, p := range perm {
		inv[p] = i
	}
	return Permute(g, inv)
}
