package gpu

import (
	"fmt"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func permuteCase(shape, perm []int) opCase {
	return opCase{
		name:    fmt.Sprintf("permute %v by %v", shape, perm),
		shapes:  [][]int{shape},
		gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Permute(in[0], perm...) },
		ref:     func(in []*ref.T) *ref.T { return ref.Permute(in[0], perm) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.PermuteBackward(perm, g)} },
		atol:    1e-6, rtol: 1e-6,
	}
}

var permuteCases = []struct{ shape, perm []int }{
	{[]int{3, 37, 5, 11}, []int{0, 2, 1, 3}}, // attention heads [B, L, H, D] -> [B, H, L, D]
	{[]int{2, 13, 7, 9}, []int{0, 2, 3, 1}},  // NCHW -> NHWC
	{[]int{2, 7, 9, 13}, []int{0, 3, 1, 2}},  // NHWC -> NCHW
	{[]int{3, 37, 11}, []int{2, 0, 1}},
	{[]int{2, 3, 1, 4, 3, 2}, []int{5, 4, 3, 2, 1, 0}}, // rank 6 reversed, a size-1 dimension
	{[]int{1, 5, 1, 7}, []int{3, 2, 1, 0}},
	{[]int{4, 5, 6}, []int{0, 1, 2}}, // identity
	{[]int{1001}, []int{0}},
	{[]int{2, 3, 4, 5, 2, 3, 2, 3}, []int{7, 1, 0, 3, 2, 5, 4, 6}}, // rank 8
}

func TestPermute(t *testing.T) {
	for _, c := range permuteCases {
		oc := permuteCase(c.shape, c.perm)
		t.Run(oc.name, func(t *testing.T) { checkOp(t, oc) })
	}
}

func TestPermutePlan(t *testing.T) {
	for _, c := range []struct {
		shape, perm, odims, istr []int
	}{
		{[]int{2, 3, 4, 5}, []int{0, 1, 2, 3}, []int{120}, []int{1}},
		{[]int{2, 3, 4, 5}, []int{0, 2, 3, 1}, []int{2, 20, 3}, []int{60, 1, 20}},
		{[]int{2, 1, 4, 5}, []int{1, 0, 2, 3}, []int{40}, []int{1}},
		{[]int{2, 3, 1, 4}, []int{3, 2, 0, 1}, []int{4, 6}, []int{1, 4}},
	} {
		od, is := permutePlan(c.shape, c.perm)
		if fmt.Sprint(od, is) != fmt.Sprint(c.odims, c.istr) {
			t.Errorf("plan of %v by %v: %v %v, want %v %v", c.shape, c.perm, od, is, c.odims, c.istr)
		}
	}
}
