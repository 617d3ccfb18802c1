package gpu

import (
	"errors"
	"fmt"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// mmCase is a MatMul checkOp case: shapes of a and b and the flags.
type mmCase struct {
	a, b           []int
	transA, transB bool
}

func (c mmCase) name() string {
	return fmt.Sprintf("%s%s@%s%s", shapeStr(c.a), tSuffix(c.transA), shapeStr(c.b), tSuffix(c.transB))
}

func checkMatMul(t *testing.T, c mmCase) {
	t.Helper()
	checkOp(t, opCase{
		name:   "matmul " + c.name(),
		shapes: [][]int{c.a, c.b},
		gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.MatMul(in[0], in[1], c.transA, c.transB) },
		ref:    func(in []*ref.T) *ref.T { return ref.MatMul(in[0], in[1], c.transA, c.transB) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			da, db := ref.MatMulBackward(in[0], in[1], g, c.transA, c.transB)
			return []*ref.T{da, db}
		},
	})
}

// mm2 returns the stored shapes of a and b for op(a) [m, k] @ op(b) [k, n]
// with batch dimensions bd on a and bb on b.
func mm2(bd, bb []int, m, k, n int, ta, tb bool) mmCase {
	a := []int{m, k}
	if ta {
		a = []int{k, m}
	}
	b := []int{k, n}
	if tb {
		b = []int{n, k}
	}
	return mmCase{a: append(append([]int(nil), bd...), a...), b: append(append([]int(nil), bb...), b...), transA: ta, transB: tb}
}

func TestMatMulTransposes(t *testing.T) {
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			for _, s := range [][3]int{{37, 29, 53}, {36, 28, 52}, {1, 1, 1}, {5, 1, 3}} {
				c := mm2(nil, nil, s[0], s[1], s[2], ta, tb)
				t.Run(c.name(), func(t *testing.T) { checkMatMul(t, c) })
			}
		}
	}
}

// TestMatMulLarge covers more than one workgroup tile (128) in M and N and
// more than one 4-step of K with a ragged end.
func TestMatMulLarge(t *testing.T) {
	for _, c := range []mmCase{
		mm2(nil, nil, 130, 70, 135, false, false),
		mm2(nil, nil, 130, 70, 135, true, true),
	} {
		t.Run(c.name(), func(t *testing.T) { checkMatMul(t, c) })
	}
}

func TestMatMulBatched(t *testing.T) {
	for _, c := range []mmCase{
		mm2([]int{3}, []int{3}, 37, 29, 53, false, false),
		mm2([]int{3}, []int{3}, 17, 9, 21, true, false),
		mm2([]int{2, 3}, []int{2, 3}, 7, 12, 5, false, true),
		mm2([]int{2, 2}, []int{2, 2}, 6, 5, 9, true, true),
	} {
		t.Run(c.name(), func(t *testing.T) { checkMatMul(t, c) })
	}
}

// TestMatMulShared covers a 2-D b shared by a's batch (x[B, T, K] @ W^T);
// its gradient sums over the batch.
func TestMatMulShared(t *testing.T) {
	for _, c := range []mmCase{
		mm2([]int{2, 5}, nil, 7, 29, 53, false, true),
		mm2([]int{3}, nil, 13, 29, 11, false, false),
		mm2([]int{3}, nil, 13, 10, 11, true, false),
		mm2([]int{4}, nil, 6, 7, 9, true, true),
	} {
		t.Run(c.name(), func(t *testing.T) { checkMatMul(t, c) })
	}
}

func TestLinear(t *testing.T) {
	for _, c := range []struct {
		x       []int
		in, out int
		bias    bool
	}{
		{[]int{37, 29}, 29, 53, true},
		{[]int{37, 29}, 29, 53, false},
		{[]int{2, 5, 29}, 29, 11, true},
		{[]int{3, 4, 32}, 32, 20, false},
		{[]int{300, 6}, 6, 3, true}, // more rows than one colsum block
	} {
		c := c
		shapes := [][]int{c.x, {c.out, c.in}}
		if c.bias {
			shapes = append(shapes, []int{c.out})
		}
		t.Run(fmt.Sprintf("%s-%dx%d-bias=%v", shapeStr(c.x), c.out, c.in, c.bias), func(t *testing.T) {
			checkOp(t, opCase{
				name:   "linear",
				shapes: shapes,
				gpu: func(e *Engine, in []*Tensor) *Tensor {
					var b *Tensor
					if c.bias {
						b = in[2]
					}
					return e.Linear(in[0], in[1], b)
				},
				ref: func(in []*ref.T) *ref.T {
					var b *ref.T
					if c.bias {
						b = in[2]
					}
					return ref.Linear(in[0], in[1], b)
				},
				refBack: func(in []*ref.T, g *ref.T) []*ref.T {
					var b *ref.T
					if c.bias {
						b = in[2]
					}
					dx, dw, db := ref.LinearBackward(in[0], in[1], b, g)
					if c.bias {
						return []*ref.T{dx, dw, db}
					}
					return []*ref.T{dx, dw}
				},
			})
		})
	}
}

// TestMatMulChunked runs products whose operands exceed a 4 KiB binding
// limit, so the GEMM splits into item, row and reduction chunks bound as
// windows (and the padding copies and the bias column sum chunk too).
func TestMatMulChunked(t *testing.T) {
	if _, err := Open(Options{}); errors.Is(err, ErrNoAdapter) {
		t.Skip("no GPU adapter: ", err)
	}
	e, err := Open(Options{MaxBinding: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mm := func(c mmCase) opCase {
		return opCase{
			name:   "matmul " + c.name(),
			shapes: [][]int{c.a, c.b},
			gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.MatMul(in[0], in[1], c.transA, c.transB) },
			ref:    func(in []*ref.T) *ref.T { return ref.MatMul(in[0], in[1], c.transA, c.transB) },
			refBack: func(in []*ref.T, g *ref.T) []*ref.T {
				da, db := ref.MatMulBackward(in[0], in[1], g, c.transA, c.transB)
				return []*ref.T{da, db}
			},
		}
	}
	for _, c := range []opCase{
		mm(mm2([]int{3}, []int{3}, 37, 29, 20, false, false)), // row chunks
		mm(mm2([]int{4}, []int{4}, 13, 21, 11, true, false)),  // item chunks
		mm(mm2([]int{6}, nil, 20, 16, 12, false, false)),      // shared b: reduction chunks for dB
		mm(mm2([]int{6}, nil, 20, 16, 12, true, true)),
		{
			name:   "linear [400, 6] -> 3",
			shapes: [][]int{{400, 6}, {3, 6}, {3}},
			gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.Linear(in[0], in[1], in[2]) },
			ref:    func(in []*ref.T) *ref.T { return ref.Linear(in[0], in[1], in[2]) },
			refBack: func(in []*ref.T, g *ref.T) []*ref.T {
				dx, dw, db := ref.LinearBackward(in[0], in[1], in[2], g)
				return []*ref.T{dx, dw, db}
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) { checkOn(t, e, c) })
	}
}

// checkOn is checkOp's forward and backward comparison on a given engine
// (the finite-difference check of the reference is left to checkOp).
func checkOn(t *testing.T, e *Engine, c opCase) {
	t.Helper()
	r, seed := seeded(t)
	ins := make([]*ref.T, len(c.shapes))
	gins := make([]*Tensor, len(c.shapes))
	for i, s := range c.shapes {
		d := randData(r, ref.Numel(s))
		ins[i] = ref.From(d, s...)
		gins[i] = e.FromSlice(f32s(d), s...).SetRequiresGrad(true)
		defer gins[i].Release()
	}
	want := c.ref(ins)
	out := c.gpu(e, gins)
	compare(t, fmt.Sprintf("%s forward (seed %d)", c.name, seed), out.MustRead(), want.Data, 1e-4, 1e-3)
	g := ref.From(randData(r, len(want.Data)), want.Shape...)
	if err := e.BackwardWith(out, e.FromSlice(f32s(g.Data), g.Shape...)); err != nil {
		t.Fatal(err)
	}
	for i, wg := range c.refBack(ins, g) {
		compare(t, fmt.Sprintf("%s backward input %d (seed %d)", c.name, i, seed), gins[i].Grad.MustRead(), wg.Data, 1e-4, 1e-3)
	}
	out.Release()
}
