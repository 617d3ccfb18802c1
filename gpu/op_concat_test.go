package gpu

import (
	"fmt"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestConcat(t *testing.T) {
	for _, c := range []struct {
		dim    int
		shapes [][]int
	}{
		{1, [][]int{{2, 3, 4, 5}, {2, 1, 4, 5}, {2, 6, 4, 5}}}, // channels (skip connections)
		{-1, [][]int{{3, 5, 7}, {3, 5, 2}, {3, 5, 9}}},         // last dimension
		{0, [][]int{{2, 67}, {5, 67}, {1, 67}}},
		{1, [][]int{{2, 0, 3}, {2, 4, 3}, {2, 1, 3}}}, // an empty input
	} {
		c := c
		t.Run(fmt.Sprintf("dim%d%v", c.dim, c.shapes), func(t *testing.T) {
			d := c.dim
			if d < 0 {
				d += len(c.shapes[0])
			}
			sizes := make([]int, len(c.shapes))
			for i, s := range c.shapes {
				sizes[i] = s[d]
			}
			checkOp(t, opCase{
				name:    "concat",
				shapes:  c.shapes,
				gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Concat(c.dim, in...) },
				ref:     func(in []*ref.T) *ref.T { return ref.Concat(d, in...) },
				refBack: func(in []*ref.T, g *ref.T) []*ref.T { return ref.ConcatBackward(d, g, sizes...) },
			})
		})
	}
}

// TestSplit_onePiece uses one piece of three: the others' gradients count
// as zero.
func TestSplit_onePiece(t *testing.T) {
	sizes := []int{3, 4, 2}
	checkOp(t, opCase{
		name:   "split piece 1",
		shapes: [][]int{{2, 9, 3, 5}},
		gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.Split(in[0], 1, sizes...)[1] },
		ref:    func(in []*ref.T) *ref.T { return ref.Split(in[0], 1, sizes...)[1] },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			return []*ref.T{ref.SplitBackward(in[0], 1, []*ref.T{nil, g, nil}, sizes...)}
		},
	})
}

// TestSplit_geglu chunks the last dimension in two and multiplies the
// halves (GEGLU's shape): both pieces carry gradients.
func TestSplit_geglu(t *testing.T) {
	checkOp(t, opCase{
		name:   "split last dim, a*b",
		shapes: [][]int{{2, 5, 22}},
		gpu: func(e *Engine, in []*Tensor) *Tensor {
			p := e.Split(in[0], -1, 11, 11)
			return e.Mul(p[0], p[1])
		},
		ref: func(in []*ref.T) *ref.T {
			p := ref.Split(in[0], 2, 11, 11)
			return ref.Binary("mul", p[0], p[1])
		},
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			p := ref.Split(in[0], 2, 11, 11)
			da, db := ref.BinaryBackward("mul", p[0], p[1], g)
			return []*ref.T{ref.SplitBackward(in[0], 2, []*ref.T{da, db}, 11, 11)}
		},
	})
}

// TestSplit_threeWays uses pieces 0 and 2 of three (piece 1 unused) and a
// zero-size piece, along dim 0.
func TestSplit_threeWays(t *testing.T) {
	sizes := []int{2, 3, 0, 2}
	checkOp(t, opCase{
		name:   "split dim 0",
		shapes: [][]int{{7, 13}},
		gpu: func(e *Engine, in []*Tensor) *Tensor {
			p := e.Split(in[0], 0, sizes...)
			return e.Sub(p[0], p[3])
		},
		ref: func(in []*ref.T) *ref.T {
			p := ref.Split(in[0], 0, sizes...)
			return ref.Binary("sub", p[0], p[3])
		},
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			p := ref.Split(in[0], 0, sizes...)
			da, db := ref.BinaryBackward("sub", p[0], p[3], g)
			return []*ref.T{ref.SplitBackward(in[0], 0, []*ref.T{da, nil, nil, db}, sizes...)}
		},
	})
}

// TestConcatSplit_splitBindings runs Concat and Split forward and backward
// with 1 KiB bindings (192 usable elements per window): whole rows per
// dispatch along dim 1, and rows longer than a window along the last dim.
func TestConcatSplit_splitBindings(t *testing.T) {
	e := smallBindingEngine(t, 1024)
	r, seed := seeded(t)
	for _, c := range []struct {
		dim    int
		shapes [][]int
	}{
		{1, [][]int{{20, 2, 3, 2}, {20, 1, 3, 2}}}, // rows of 12 and 6 in rows of 18: 11 rows per dispatch
		{1, [][]int{{2, 30, 4}, {2, 70, 4}}},       // rows of 120 and 280 in rows of 400: pieces of rows
	} {
		t.Run(fmt.Sprint(c.shapes), func(t *testing.T) {
			ins := make([]*ref.T, len(c.shapes))
			gins := make([]*Tensor, len(c.shapes))
			sizes := make([]int, len(c.shapes))
			for i, s := range c.shapes {
				ins[i] = ref.From(randData(r, ref.Numel(s)), s...)
				gins[i] = e.FromSlice(f32s(ins[i].Data), s...)
				gins[i].SetRequiresGrad(true)
				sizes[i] = s[c.dim]
			}
			want := ref.Concat(c.dim, ins...)
			out := e.Concat(c.dim, gins...)
			compare(t, fmt.Sprintf("concat forward (seed %d)", seed), out.MustRead(), want.Data, 1e-6, 1e-6)
			// Split the concatenation again, use only the last piece.
			pieces := e.Split(out, c.dim, sizes...)
			last := len(pieces) - 1
			compare(t, "split forward", pieces[last].MustRead(), ins[last].Data, 1e-6, 1e-6)
			g := ref.From(randData(r, pieces[last].Len()), pieces[last].Shape()...)
			if err := e.BackwardWith(pieces[last], e.FromSlice(f32s(g.Data), g.Shape...)); err != nil {
				t.Fatal(err)
			}
			for i := range gins {
				want := ref.New(c.shapes[i]...)
				if i == last {
					want = g
				}
				compare(t, fmt.Sprintf("backward input %d", i), gins[i].Grad.MustRead(), want.Data, 1e-6, 1e-6)
			}
		})
	}
}
