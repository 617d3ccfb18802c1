package gpu

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

func TestTimestepEmbedding(t *testing.T) {
	cases := []struct {
		n, dim      int
		flip        bool
		shift, maxP float32
		tmax        float64 // timesteps uniform in [0, tmax)
		atol        float64
	}{
		{5, 320, true, 0, 10000, 1000, 1e-3}, // Stable Diffusion 1.x
		{3, 7, false, 1, 10000, 1000, 1e-3},  // odd dim, DDPM shift
		{4, 33, true, 1, 100, 3, 1e-4},
		{2, 1, false, 0, 10000, 1000, 1e-4}, // only the pad column
		{67, 64, false, 0.5, 10000, 50, 2e-4},
	}
	for _, c := range cases {
		c := c
		t.Run(fmt.Sprintf("N%d_dim%d_flip%v_shift%g", c.n, c.dim, c.flip, c.shift), func(t *testing.T) {
			checkOp(t, opCase{
				name:   "timestep",
				shapes: [][]int{{c.n}},
				gen: func(r *rand.Rand, _ int, shape []int) []float64 {
					d := make([]float64, shape[0])
					for i := range d {
						d[i] = r.Float64() * c.tmax
					}
					return d
				},
				gpu: func(e *Engine, in []*Tensor) *Tensor {
					return e.TimestepEmbedding(in[0], c.dim, c.flip, c.shift, c.maxP)
				},
				ref: func(in []*ref.T) *ref.T {
					return ref.TimestepEmbedding(in[0], c.dim, c.flip, float64(c.shift), float64(c.maxP))
				},
				refBack: func(in []*ref.T, g *ref.T) []*ref.T {
					return []*ref.T{ref.TimestepEmbeddingBackward(in[0], c.dim, c.flip, float64(c.shift), float64(c.maxP), g)}
				},
				atol: c.atol, rtol: 1e-3,
			})
		})
	}
}

// TestTimestepEmbeddingValues pins a few values of the SD 1.x embedding.
func TestTimestepEmbeddingValues(t *testing.T) {
	e := engine(t)
	ts := e.FromSlice([]float32{0, 999}, 2)
	defer ts.Release()
	emb := e.TimestepEmbedding(ts, 320, true, 0, 10000)
	defer emb.Release()
	v := emb.MustRead()
	// t = 0: cos block 1, sin block 0.
	if v[0] != 1 || v[159] != 1 || v[160] != 0 || v[319] != 0 {
		t.Fatalf("t=0 row: %v %v %v %v", v[0], v[159], v[160], v[319])
	}
	// t = 999, j = 0: freq 1, cos(999) and sin(999).
	want := ref.TimestepEmbedding(ref.From([]float64{999}, 1), 320, true, 0, 10000).Data
	compare(t, "t=999 row", v[320:], want, 2e-4, 0)
}
