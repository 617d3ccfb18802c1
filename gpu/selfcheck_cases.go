package gpu

import (
	"math/rand"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// One representative case per op for SelfCheck, at Stable Diffusion-like
// but small shapes (none a multiple of a workgroup or tile size).
func init() {
	one := func(name string, shapes [][]int, g func(e *Engine, in []*Tensor) *Tensor, r func(in []*ref.T) *ref.T, rb func(in []*ref.T, g *ref.T) []*ref.T) opCase {
		return opCase{name: name, shapes: shapes, gpu: g, ref: r, refBack: rb}
	}
	for _, u := range []struct {
		name string
		f    func(e *Engine, x *Tensor) *Tensor
	}{{"silu", (*Engine).SiLU}, {"gelu", (*Engine).GELU}, {"gelu_tanh", (*Engine).GELUTanh}, {"quick_gelu", (*Engine).QuickGELU}} {
		u := u
		moreSelfCases = append(moreSelfCases, one(u.name+" [3, 37, 11]", [][]int{{3, 37, 11}},
			func(e *Engine, in []*Tensor) *Tensor { return u.f(e, in[0]) },
			func(in []*ref.T) *ref.T { return ref.Unary(u.name, in[0]) },
			func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.UnaryBackward(u.name, in[0], g)} }))
	}
	moreSelfCases = append(moreSelfCases,
		one("matmul [2, 37, 29] x [2, 53, 29]^T", [][]int{{2, 37, 29}, {2, 53, 29}},
			func(e *Engine, in []*Tensor) *Tensor { return e.MatMul(in[0], in[1], false, true) },
			func(in []*ref.T) *ref.T { return ref.MatMul(in[0], in[1], false, true) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				da, db := ref.MatMulBackward(in[0], in[1], g, false, true)
				return []*ref.T{da, db}
			}),
		one("linear [2, 7, 33] -> 19", [][]int{{2, 7, 33}, {19, 33}, {19}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Linear(in[0], in[1], in[2]) },
			func(in []*ref.T) *ref.T { return ref.Linear(in[0], in[1], in[2]) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dx, dw, db := ref.LinearBackward(in[0], in[1], in[2], g)
				return []*ref.T{dx, dw, db}
			}),
		one("conv2d 3x3 s1 [2, 5, 9, 7] -> 7", [][]int{{2, 5, 9, 7}, {7, 5, 3, 3}, {7}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Conv2d(in[0], in[1], in[2], 1, 1) },
			func(in []*ref.T) *ref.T { return ref.Conv2d(in[0], in[1], in[2], 1, 1) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dx, dw, db := ref.Conv2dBackward(in[0], in[1], g, 1, 1, true)
				return []*ref.T{dx, dw, db}
			}),
		one("conv2d 3x3 s2 [1, 6, 9, 9] -> 5", [][]int{{1, 6, 9, 9}, {5, 6, 3, 3}, {5}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Conv2d(in[0], in[1], in[2], 2, 1) },
			func(in []*ref.T) *ref.T { return ref.Conv2d(in[0], in[1], in[2], 2, 1) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dx, dw, db := ref.Conv2dBackward(in[0], in[1], g, 2, 1, true)
				return []*ref.T{dx, dw, db}
			}),
		one("group norm [2, 6, 5, 7] groups 3", [][]int{{2, 6, 5, 7}, {6}, {6}},
			func(e *Engine, in []*Tensor) *Tensor { return e.GroupNorm(in[0], in[1], in[2], 3, 1e-5) },
			func(in []*ref.T) *ref.T { return ref.GroupNorm(in[0], in[1], in[2], 3, 1e-5) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dx, dw, db := ref.GroupNormBackward(in[0], in[1], in[2], g, 3, 1e-5)
				return []*ref.T{dx, dw, db}
			}),
		one("layer norm [3, 5, 37]", [][]int{{3, 5, 37}, {37}, {37}},
			func(e *Engine, in []*Tensor) *Tensor { return e.LayerNorm(in[0], in[1], in[2], 1e-5) },
			func(in []*ref.T) *ref.T { return ref.LayerNorm(in[0], in[1], in[2], 1e-5) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dx, dw, db := ref.LayerNormBackward(in[0], in[1], in[2], g, 1e-5)
				return []*ref.T{dx, dw, db}
			}),
		one("softmax [4, 77]", [][]int{{4, 77}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Softmax(in[0]) },
			func(in []*ref.T) *ref.T { return ref.Softmax(in[0]) },
			func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.SoftmaxBackward(in[0], g)} }),
		one("attention causal [2, 2, 37, 24]", [][]int{{2, 2, 37, 24}, {2, 2, 37, 24}, {2, 2, 37, 24}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Attention(in[0], in[1], in[2], 0.2, true) },
			func(in []*ref.T) *ref.T { return ref.Attention(in[0], in[1], in[2], 0.2, true) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dq, dk, dv := ref.AttentionBackward(in[0], in[1], in[2], g, 0.2, true)
				return []*ref.T{dq, dk, dv}
			}),
		one("cross attention [1, 2, 53, 8] x 77", [][]int{{1, 2, 53, 8}, {1, 2, 77, 8}, {1, 2, 77, 8}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Attention(in[0], in[1], in[2], 0.35, false) },
			func(in []*ref.T) *ref.T { return ref.Attention(in[0], in[1], in[2], 0.35, false) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dq, dk, dv := ref.AttentionBackward(in[0], in[1], in[2], g, 0.35, false)
				return []*ref.T{dq, dk, dv}
			}),
		one("geglu [3, 5, 2x19]", [][]int{{3, 5, 38}},
			func(e *Engine, in []*Tensor) *Tensor { return e.GEGLU(in[0]) },
			func(in []*ref.T) *ref.T { return ref.GEGLU(in[0]) },
			func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.GEGLUBackward(in[0], g)} }),
		one("mean over (1, 2) of [3, 37, 11]", [][]int{{3, 37, 11}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Mean(in[0], 1, 2) },
			func(in []*ref.T) *ref.T { return ref.Reduce(in[0], []int{1, 2}, true) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				return []*ref.T{ref.ReduceBackward(in[0].Shape, []int{1, 2}, g, true)}
			}),
		one("mse loss [2, 4, 9, 7]", [][]int{{2, 4, 9, 7}, {2, 4, 9, 7}},
			func(e *Engine, in []*Tensor) *Tensor { return e.MSELoss(in[0], in[1]) },
			func(in []*ref.T) *ref.T { return ref.MSE(in[0], in[1]) },
			func(in []*ref.T, g *ref.T) []*ref.T {
				dp, dt := ref.MSEBackward(in[0], in[1], g)
				return []*ref.T{dp, dt}
			}),
		one("permute [2, 7, 3, 5] -> (0, 2, 1, 3)", [][]int{{2, 7, 3, 5}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Permute(in[0], 0, 2, 1, 3) },
			func(in []*ref.T) *ref.T { return ref.Permute(in[0], []int{0, 2, 1, 3}) },
			func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.PermuteBackward([]int{0, 2, 1, 3}, g)} }),
		one("upsample 2x [2, 3, 5, 7]", [][]int{{2, 3, 5, 7}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Upsample2x(in[0]) },
			func(in []*ref.T) *ref.T { return ref.Upsample2x(in[0]) },
			func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.Upsample2xBackward(g)} }),
		one("concat channels [2, 3|5, 4, 3]", [][]int{{2, 3, 4, 3}, {2, 5, 4, 3}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Concat(1, in[0], in[1]) },
			func(in []*ref.T) *ref.T { return ref.Concat(1, in[0], in[1]) },
			func(in []*ref.T, g *ref.T) []*ref.T { return ref.ConcatBackward(1, g, 3, 5) }),
		one("pad2d (0, 1, 0, 1) [2, 3, 7, 5]", [][]int{{2, 3, 7, 5}},
			func(e *Engine, in []*Tensor) *Tensor { return e.Pad2d(in[0], 0, 1, 0, 1) },
			func(in []*ref.T) *ref.T { return ref.Pad2d(in[0], 0, 1, 0, 1) },
			func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.Pad2dBackward(in[0], g, 0, 0)} }),
		opCase{name: "timestep embedding [5] -> 33", shapes: [][]int{{5}},
			gen: func(r *rand.Rand, _ int, s []int) []float64 {
				d := make([]float64, s[0])
				for i := range d {
					d[i] = r.Float64() * 1000
				}
				return d
			},
			gpu: func(e *Engine, in []*Tensor) *Tensor { return e.TimestepEmbedding(in[0], 33, true, 0, 10000) },
			ref: func(in []*ref.T) *ref.T { return ref.TimestepEmbedding(in[0], 33, true, 0, 10000) },
			refBack: func(in []*ref.T, g *ref.T) []*ref.T {
				return []*ref.T{ref.TimestepEmbeddingBackward(in[0], 33, true, 0, 10000, g)}
			},
			atol: 2e-3, rtol: 2e-3, fdSkip: true},
	)
	// Embedding: ids are data, the table takes the gradient.
	ids := []int32{3, 0, 7, 3, 11, 2}
	idsInt := []int{3, 0, 7, 3, 11, 2}
	moreSelfCases = append(moreSelfCases, opCase{
		name: "embedding [2, 3] ids into [13, 9]", shapes: [][]int{{13, 9}},
		gpu: func(e *Engine, in []*Tensor) *Tensor {
			id := e.NewIDs(ids, 2, 3)
			defer id.Release()
			return e.Embedding(id, in[0])
		},
		ref:     func(in []*ref.T) *ref.T { return ref.Gather(in[0], 0, idsInt, []int{2, 3}) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T { return []*ref.T{ref.GatherBackward(in[0].Shape, 0, idsInt, g)} },
	})
}
