package gpu

import (
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestBinary(t *testing.T) {
	shapes := [][2][]int{
		{{3, 37, 5}, {3, 37, 5}},   // same shape
		{{2, 7, 9, 11}, {7, 1, 1}}, // per-channel bias
		{{13, 1}, {1, 300}},        // outer broadcast both ways
		{{301}, {1}},               // scalar operand
		{{2, 3, 17, 19}, {2, 3, 1, 1}},
	}
	for _, op := range []struct {
		name string
		f    func(e *Engine, a, b *Tensor) *Tensor
	}{{"add", (*Engine).Add}, {"sub", (*Engine).Sub}, {"mul", (*Engine).Mul}} {
		for _, s := range shapes {
			op, s := op, s
			t.Run(op.name+shapeStr(s[0])+shapeStr(s[1]), func(t *testing.T) {
				checkOp(t, opCase{
					name:   op.name,
					shapes: [][]int{s[0], s[1]},
					gpu:    func(e *Engine, in []*Tensor) *Tensor { return op.f(e, in[0], in[1]) },
					ref:    func(in []*ref.T) *ref.T { return ref.Binary(op.name, in[0], in[1]) },
					refBack: func(in []*ref.T, g *ref.T) []*ref.T {
						da, db := ref.BinaryBackward(op.name, in[0], in[1], g)
						return []*ref.T{da, db}
					},
				})
			})
		}
	}
}

func TestScale(t *testing.T) {
	checkOp(t, opCase{
		name:    "scale",
		shapes:  [][]int{{5, 67}},
		gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Scale(in[0], -2.5) },
		ref:     func(in []*ref.T) *ref.T { return ref.Scale(in[0], -2.5) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.Scale(g, -2.5)} },
	})
}
