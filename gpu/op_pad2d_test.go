package gpu

import (
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestPad2d(t *testing.T) {
	for _, p := range [][4]int{{0, 1, 0, 1}, {2, 0, 3, 1}} {
		p := p
		checkOp(t, opCase{
			name:    "pad2d",
			shapes:  [][]int{{2, 3, 7, 5}},
			gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Pad2d(in[0], p[0], p[1], p[2], p[3]) },
			ref:     func(in []*ref.T) *ref.T { return ref.Pad2d(in[0], p[0], p[1], p[2], p[3]) },
			refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.Pad2dBackward(in[0], g, p[0], p[2])} },
		})
	}
}

func TestClamp(t *testing.T) {
	checkOp(t, opCase{
		name:   "clamp",
		shapes: [][]int{{3, 301}},
		// Keep values away from the bounds so finite differences are valid.
		gen: func(r *rand.Rand, i int, shape []int) []float64 {
			d := make([]float64, ref.Numel(shape))
			for j := range d {
				v := r.Float64()*2 - 1
				for v > 0.49 && v < 0.51 || v > -0.51 && v < -0.49 {
					v = r.Float64()*2 - 1
				}
				d[j] = v
			}
			return d
		},
		gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Clamp(in[0], -0.5, 0.5) },
		ref:     func(in []*ref.T) *ref.T { return ref.Clamp(in[0], -0.5, 0.5) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.ClampBackward(in[0], g, -0.5, 0.5)} },
	})
}

// TestPad2d_chunked pads a tensor many times larger than the binding limit.
func TestPad2d_chunked(t *testing.T) {
	engine(t)
	e, err := Open(Options{MaxBinding: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	r, seed := seeded(t)
	x := ref.From(randData(r, 2*5*9*7), 2, 5, 9, 7)
	tx := e.FromSlice(f32s(x.Data), x.Shape...).SetRequiresGrad(true)
	y := e.Pad2d(tx, 0, 1, 2, 1)
	compare(t, "chunked pad2d", y.MustRead(), ref.Pad2d(x, 0, 1, 2, 1).Data, 0, 1e-7)
	g := ref.From(randData(r, y.Len()), y.Shape()...)
	if err := e.BackwardWith(y, e.FromSlice(f32s(g.Data), g.Shape...)); err != nil {
		t.Fatal(err)
	}
	compare(t, "chunked pad2d backward", tx.Grad.MustRead(), ref.Pad2dBackward(x, g, 0, 2).Data, 0, 1e-7)
	_ = seed
}
