package gpu

import (
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestSoftmax(t *testing.T) {
	for _, s := range [][]int{{5, 1}, {3, 77}, {2, 3, 300}, {4099}} {
		s := s
		t.Run(shapeStr(s), func(t *testing.T) {
			checkOp(t, opCase{
				name:   "softmax",
				shapes: [][]int{s},
				// Spread the logits so the max subtraction matters.
				gen: func(r *rand.Rand, i int, shape []int) []float64 {
					d := randData(r, ref.Numel(shape))
					for j := range d {
						d[j] = d[j]*8 + 40
					}
					return d
				},
				gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.Softmax(in[0]) },
				ref:     func(in []*ref.T) *ref.T { return ref.Softmax(in[0]) },
				refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.SoftmaxBackward(in[0], g)} },
			})
		})
	}
}
