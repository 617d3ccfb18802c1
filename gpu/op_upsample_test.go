package gpu

import (
	"fmt"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestUpsample2x(t *testing.T) {
	for _, s := range [][]int{{2, 3, 5, 7}, {1, 1, 1, 1}, {1, 2, 17, 9}} {
		s := s
		t.Run(shapeStr(s), func(t *testing.T) {
			checkOp(t, opCase{
				name:    "upsample2x",
				shapes:  [][]int{s},
				gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Upsample2x(in[0]) },
				ref:     func(in []*ref.T) *ref.T { return ref.Upsample2x(in[0]) },
				refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.Upsample2xBackward(g)} },
			})
		})
	}
}

// TestUpsample2x_splitBindings runs Upsample2x forward and backward with
// 1 KiB bindings (192 usable elements): 3 planes of 4x4 per dispatch.
func TestUpsample2x_splitBindings(t *testing.T) {
	e := smallBindingEngine(t, 1024)
	r, seed := seeded(t)
	x := ref.From(randData(r, 2*5*4*4), 2, 5, 4, 4)
	gx := e.FromSlice(f32s(x.Data), x.Shape...)
	gx.SetRequiresGrad(true)
	out := e.Upsample2x(gx)
	compare(t, fmt.Sprintf("forward (seed %d)", seed), out.MustRead(), ref.Upsample2x(x).Data, 1e-6, 1e-6)
	g := ref.From(randData(r, out.Len()), out.Shape()...)
	if err := e.BackwardWith(out, e.FromSlice(f32s(g.Data), g.Shape...)); err != nil {
		t.Fatal(err)
	}
	compare(t, fmt.Sprintf("backward (seed %d)", seed), gx.Grad.MustRead(), ref.Upsample2xBackward(g).Data, 1e-5, 1e-5)
}
