package gpu

import (
	"fmt"
	"sort"
)

// Permute (materialising transpose of any dimensions).
// Forward and backward: shaders/permute_fwd.wgsl (the backward permutes g
// by the inverse permutation). Reference: ref.Permute.

// Permute returns x with its dimensions reordered: out.shape[i] =
// x.shape[perm[i]] (torch.permute), as a new contiguous tensor; e.g.
// [B, L, H, D] -> [B, H, L, D] with perm (0, 2, 1, 3), or [N, C, H, W] ->
// [N, H, W, C] with (0, 2, 3, 1). Rank <= 8. Tensors larger than one
// storage binding are copied in windows of input and output.
func (e *Engine) Permute(x *Tensor, perm ...int) *Tensor {
	if len(perm) != len(x.shape) {
		panic(fmt.Sprintf("gpu: Permute of %v by %v: one entry per dimension needed", x.shape, perm))
	}
	seen := make([]bool, len(perm))
	inv := make([]int, len(perm))
	shape := make([]int, len(perm))
	for i, p := range perm {
		if p < 0 || p >= len(perm) || seen[p] {
			panic(fmt.Sprintf("gpu: Permute by %v: not a permutation of 0..%d", perm, len(perm)-1))
		}
		seen[p] = true
		inv[p] = i
		shape[i] = x.shape[p]
	}
	if len(perm) > maxRank {
		panic(fmt.Sprintf("gpu: Permute of rank %d (at most %d)", len(perm), maxRank))
	}
	out := e.alloc(shape...)
	e.permuteInto(x, perm, out)
	e.record(out, []*Tensor{x}, func(g *Tensor) {
		dx := e.alloc(x.shape...)
		e.permuteInto(g, inv, dx)
		x.accumulate(dx)
	})
	return out
}

// permutePlan merges the permutation: size-1 dimensions dropped, runs of
// input dimensions that stay adjacent and in order in the output fused. It
// returns out's merged dimensions and the input stride of each.
func permutePlan(shape, perm []int) (odims, istr []int) {
	// Runs of consecutive input dimensions, in output order.
	type run struct{ first, last, size int }
	var runs []run
	for _, p := range perm {
		if shape[p] == 1 {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].last < p && onlyOnes(shape, runs[n-1].last+1, p) {
			runs[n-1].last = p
			runs[n-1].size *= shape[p]
			continue
		}
		runs = append(runs, run{p, p, shape[p]})
	}
	// Strides of the runs in the input: row-major over runs in input order.
	byInput := make([]int, len(runs))
	for i := range byInput {
		byInput[i] = i
	}
	sort.Slice(byInput, func(a, b int) bool { return runs[byInput[a]].first < runs[byInput[b]].first })
	strides := make([]int, len(runs))
	s := 1
	for k := len(byInput) - 1; k >= 0; k-- {
		strides[byInput[k]] = s
		s *= runs[byInput[k]].size
	}
	for i, r := range runs {
		odims = append(odims, r.size)
		istr = append(istr, strides[i])
	}
	return
}

// onlyOnes reports whether shape[a:b] holds only size-1 dimensions.
func onlyOnes(shape []int, a, b int) bool {
	for _, d := range shape[a:b] {
		if d != 1 {
			return false
		}
	}
	return true
}

// permuteInto writes x permuted by perm into out (not recorded).
func (e *Engine) permuteInto(x *Tensor, perm []int, out *Tensor) {
	odims, istr := permutePlan(x.shape, perm)
	e.chunks(x.n, func(xfrom, xcount int) {
		e.chunks(out.n, func(from, count int) {
			p := Params{count, from, len(odims), xfrom, xcount, 0, 0, 0}
			p = packDims(p, odims)
			p = packDims(p, istr)
			e.Dispatch(Kernel{File: "permute_fwd.wgsl", Entry: "main"}, p, e.Grid1D(count, 256),
				x.window(xfrom, xcount), out.window(from, count))
		})
	})
}
