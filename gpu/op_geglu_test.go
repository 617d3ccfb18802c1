package gpu

import (
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func gegluCase(shape []int) opCase {
	return opCase{
		name:    "geglu",
		shapes:  [][]int{shape},
		gen:     wide,
		gpu:     func(e *Engine, in []*Tensor) *Tensor { return e.GEGLU(in[0]) },
		ref:     func(in []*ref.T) *ref.T { return ref.GEGLU(in[0]) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.GEGLUBackward(in[0], g)} },
		atol:    1e-4, rtol: 1e-4,
	}
}

func TestGEGLU(t *testing.T) {
	for _, s := range [][]int{{3, 37, 22}, {2, 5, 7, 2}, {1, 2}, {578}} {
		t.Run(shapeStr(s), func(t *testing.T) { checkOp(t, gegluCase(s)) })
	}
}
