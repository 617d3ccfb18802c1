package gpu

import (
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestGroupNorm(t *testing.T) {
	cases := []struct {
		name   string
		x      []int
		groups int
		eps    float64
		affine bool
		offset float64 // added to x: a mean far from 0 tests the variance's stability
		atol   float64
	}{
		{"C6-G3-5x7", []int{2, 6, 5, 7}, 3, 1e-5, true, 0, 0},
		{"C4-G2-1x1-two-values-per-group", []int{2, 4, 1, 1}, 2, 1e-6, true, 0, 0},
		{"C6-G2-plain-3d", []int{1, 6, 11}, 2, 1e-5, false, 0, 0},
		{"C5-G5-2d", []int{3, 5}, 5, 1e-6, true, 0, 0},
		{"C4-G1-29x31", []int{1, 4, 29, 31}, 1, 1e-5, true, 0, 0}, // 256-thread entry
		// dweight sums 4096 products per channel, and x ~ 30 carries f32
		// input rounding of ~2e-6 into every xhat: allow 1e-3.
		{"C80-G2-64x64-big-groups", []int{1, 80, 64, 64}, 2, 1e-6, true, 30, 1e-3},
	}
	for _, c := range cases {
		c := c
		t.Run(c.name, func(t *testing.T) {
			shapes := [][]int{c.x}
			C := c.x[1]
			if c.affine {
				shapes = append(shapes, []int{C}, []int{C})
			}
			checkOp(t, opCase{
				name:   "groupnorm",
				shapes: shapes,
				atol:   c.atol,
				gen: func(r *rand.Rand, i int, shape []int) []float64 {
					d := randData(r, ref.Numel(shape))
					if i == 0 {
						for j := range d {
							d[j] += c.offset
						}
					}
					return d
				},
				gpu: func(e *Engine, in []*Tensor) *Tensor {
					if c.affine {
						return e.GroupNorm(in[0], in[1], in[2], c.groups, float32(c.eps))
					}
					return e.GroupNorm(in[0], nil, nil, c.groups, float32(c.eps))
				},
				ref: func(in []*ref.T) *ref.T {
					if c.affine {
						return ref.GroupNorm(in[0], in[1], in[2], c.groups, c.eps)
					}
					return ref.GroupNorm(in[0], nil, nil, c.groups, c.eps)
				},
				refBack: func(in []*ref.T, g *ref.T) []*ref.T {
					if c.affine {
						dx, dw, db := ref.GroupNormBackward(in[0], in[1], in[2], g, c.groups, c.eps)
						return []*ref.T{dx, dw, db}
					}
					dx, _, _ := ref.GroupNormBackward(in[0], nil, nil, g, c.groups, c.eps)
					return []*ref.T{dx}
				},
			})
		})
	}
}
