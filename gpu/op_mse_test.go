package gpu

import (
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func mseCase(shape []int) opCase {
	return opCase{
		name:   "mse" + shapeStr(shape),
		shapes: [][]int{shape, shape},
		gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.MSELoss(in[0], in[1]) },
		ref:    func(in []*ref.T) *ref.T { return ref.MSE(in[0], in[1]) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			a, b := ref.MSEBackward(in[0], in[1], g)
			return []*ref.T{a, b}
		},
	}
}

func TestMSELoss(t *testing.T) {
	for _, s := range [][]int{{3, 37, 11}, {1001}, {2, 4, 13, 13}, {1}, {30000}} {
		t.Run(shapeStr(s), func(t *testing.T) { checkOp(t, mseCase(s)) })
	}
}

// TestMSELossBackward: the loss works with Engine.Backward and a frozen
// target gets no gradient.
func TestMSELossBackward(t *testing.T) {
	e := engine(t)
	p := e.FromSlice([]float32{1, 2, 3, 4}, 2, 2).SetRequiresGrad(true)
	q := e.FromSlice([]float32{1, 1, 1, 1}, 2, 2)
	defer p.Release()
	defer q.Release()
	l := e.MSELoss(p, q)
	if v, _ := l.Item(); v != (0+1+4+9)/4.0 {
		t.Fatalf("loss %g", v)
	}
	if err := e.Backward(l); err != nil {
		t.Fatal(err)
	}
	want := []float32{0, 0.5, 1, 1.5}
	for i, v := range p.Grad.MustRead() {
		if v != want[i] {
			t.Fatalf("grad %v, want %v", p.Grad.MustRead(), want)
		}
	}
	if q.Grad != nil {
		t.Fatal("the target got a gradient")
	}
	l.Release()
}
