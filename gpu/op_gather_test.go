package gpu

import (
	"fmt"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// gatherCase gathers x [xshape] along dim with ids (shape idShape) drawn at
// random from [0, xshape[dim]), with repeats; noBack checks the forward only.
func gatherCase(t *testing.T, xshape []int, dim int, idShape []int, embedding, noBack bool) {
	r, _ := seeded(t)
	d := dim
	if d < 0 {
		d += len(xshape)
	}
	n := ref.Numel(idShape)
	ids := make([]int32, n)
	ints := make([]int, n)
	for i := range ids {
		ids[i] = int32(r.Intn(xshape[d]))
		ints[i] = int(ids[i])
	}
	if n > 2 {
		ids[n-1], ints[n-1] = ids[0], ints[0] // at least one repeat
	}
	e := engine(t)
	idx := e.NewIDs(ids, idShape...)
	defer idx.Release()
	oc := opCase{
		name:   fmt.Sprintf("gather %v dim %d ids %v", xshape, dim, idShape),
		shapes: [][]int{xshape},
		gpu: func(e *Engine, in []*Tensor) *Tensor {
			if embedding {
				return e.Embedding(idx, in[0])
			}
			return e.Gather(in[0], dim, idx)
		},
		ref: func(in []*ref.T) *ref.T { return ref.Gather(in[0], d, ints, idShape) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			return []*ref.T{ref.GatherBackward(xshape, d, ints, g)}
		},
	}
	if noBack {
		oc.refBack = nil
	}
	checkOp(t, oc)
}

func TestGather(t *testing.T) {
	cases := []struct {
		x     []int
		dim   int
		ids   []int
		embed bool
	}{
		{[]int{50, 13}, 0, []int{2, 7}, true},  // embedding, 2-D ids
		{[]int{300, 77}, 0, []int{77}, true},   // many unused rows
		{[]int{3, 37, 11}, 1, []int{5}, false}, // middle dimension
		{[]int{4, 9}, -1, []int{2, 3}, false},  // last dimension, 2-D ids
		{[]int{6, 5, 3}, 0, []int{1}, false},   // one id
		{[]int{2, 3, 4}, 2, []int{13}, false},  // more ids than rows
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v/%d/%v", c.x, c.dim, c.ids), func(t *testing.T) { gatherCase(t, c.x, c.dim, c.ids, c.embed, false) })
	}
}

func TestGatherOutOfRange(t *testing.T) {
	e := engine(t)
	idx := e.NewIDs([]int32{0, 5})
	defer idx.Release()
	x := e.Zeros(5, 2)
	defer x.Release()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for an id past the table")
		}
	}()
	e.Embedding(idx, x)
}

func TestInverseIndex(t *testing.T) {
	w := inverseIndex([]int32{2, 0, 2, 3, 2}, 5)
	want := []uint32{0, 1, 1, 4, 5, 5 /* offsets */, 1, 0, 2, 4, 3 /* positions */}
	if fmt.Sprint(w) != fmt.Sprint(want) {
		t.Fatalf("inverse index %v, want %v", w, want)
	}
}
