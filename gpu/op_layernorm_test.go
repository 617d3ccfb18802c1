package gpu

import (
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestLayerNorm(t *testing.T) {
	cases := []struct {
		name   string
		x      []int
		affine bool
	}{
		{"3d-C37-affine", []int{2, 5, 37}, true},
		{"2d-C37-plain", []int{7, 37}, false},
		{"rows300-C19", []int{300, 19}, true}, // several parts in the dweight sums
		{"C700", []int{3, 700}, true},         // 256-thread entry
	}
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			const eps = 1e-5
			shapes := [][]int{c.x}
			C := c.x[len(c.x)-1]
			if c.affine {
				shapes = append(shapes, []int{C}, []int{C})
			}
			checkOp(t, opCase{
				name:   "layernorm",
				shapes: shapes,
				gpu: func(e *Engine, in []*Tensor) *Tensor {
					if c.affine {
						return e.LayerNorm(in[0], in[1], in[2], eps)
					}
					return e.LayerNorm(in[0], nil, nil, eps)
				},
				ref: func(in []*ref.T) *ref.T {
					if c.affine {
						return ref.LayerNorm(in[0], in[1], in[2], eps)
					}
					return ref.LayerNorm(in[0], nil, nil, eps)
				},
				refBack: func(in []*ref.T, g *ref.T) []*ref.T {
					if c.affine {
						dx, dw, db := ref.LayerNormBackward(in[0], in[1], in[2], g, eps)
						return []*ref.T{dx, dw, db}
					}
					dx, _, _ := ref.LayerNormBackward(in[0], nil, nil, g, eps)
					return []*ref.T{dx}
				},
			})
		})
	}
}
