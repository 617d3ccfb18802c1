package main

import (
	"fmt"
	"math/rand"

	"github.com/instructbooth/instructbooth/gpu"
)

// Conv2d 3x3 and attention at Stable Diffusion shapes, each compared with
// the engine's own square matmul rate (1024^3 on a CPU adapter, 2048^3 on a GPU) measured in the same run (the
// reference column), so the ratio says how close the op comes to the GEMM
// rate. On a CPU adapter the shapes are scaled down to finish in
// seconds; on a GPU they are SD 1.5's at 64x64 latents.
func init() {
	matmulRef := func(e *gpu.Engine, r *rand.Rand) (ref func(), flop float64, done func()) {
		n := 1024
		if e.Info.Type != "cpu" {
			n = 2048
		}
		A, B := e.FromSlice(randF32(r, n*n), n, n), e.FromSlice(randF32(r, n*n), n, n)
		ref = func() { e.NoGrad(func() { e.MatMul(A, B, false, false).Release() }) }
		return ref, 2 * float64(n*n*n), func() { A.Release(); B.Release() }
	}
	type convShape struct{ n, c, hw int }
	for _, bwd := range []bool{false, true} {
		bwd := bwd
		name := "conv3x3"
		if bwd {
			name = "conv3x3-bwd"
		}
		idx := len(cases)
		cases = append(cases, benchCase{op: name})
		cases[idx].prepare = func(e *gpu.Engine, r *rand.Rand) (run, ref, done func()) {
			c := &cases[idx]
			s := convShape{1, 320, 32}
			if e.Info.Type != "cpu" {
				s = convShape{2, 320, 64}
			}
			c.size = fmt.Sprintf("%dx%dx%dx%d", s.n, s.c, s.hw, s.hw)
			c.flop = 2 * float64(s.n*s.c*s.hw*s.hw) * float64(s.c*9)
			if bwd {
				c.flop *= 2 // dX and dW, each a GEMM of the forward's size
			}
			x := e.FromSlice(randF32(r, s.n*s.c*s.hw*s.hw), s.n, s.c, s.hw, s.hw)
			w := e.FromSlice(randF32(r, s.c*s.c*9), s.c, s.c, 3, 3)
			b := e.FromSlice(randF32(r, s.c), s.c)
			if bwd {
				x.SetRequiresGrad(true)
				w.SetRequiresGrad(true)
				run = func() {
					y := e.Conv2d(x, w, b, 1, 1)
					e.BackwardWith(y, e.Full(1, y.Shape()...))
					gpu.ZeroGrad(x, w)
				}
			} else {
				run = func() { e.NoGrad(func() { e.Conv2d(x, w, b, 1, 1).Release() }) }
			}
			refRun, refFlop, refDone := matmulRef(e, r)
			c.refFlop, c.refGPU = refFlop, true
			return run, refRun, func() { x.Release(); w.Release(); b.Release(); refDone() }
		}
	}
	type attnShape struct{ b, h, l, lk, d int }
	for _, v := range []struct {
		name   string
		causal bool
		bwd    bool
		cpu    attnShape
		gpu    attnShape
	}{
		{"attn-self", false, false, attnShape{1, 8, 1024, 1024, 40}, attnShape{2, 8, 4096, 4096, 40}},
		{"attn-self-bwd", false, true, attnShape{1, 8, 1024, 1024, 40}, attnShape{2, 8, 4096, 4096, 40}},
		{"attn-cross", false, false, attnShape{1, 8, 1024, 77, 40}, attnShape{2, 8, 4096, 77, 40}},
	} {
		v := v
		idx := len(cases)
		cases = append(cases, benchCase{op: v.name})
		cases[idx].prepare = func(e *gpu.Engine, r *rand.Rand) (run, ref, done func()) {
			c := &cases[idx]
			s := v.cpu
			if e.Info.Type != "cpu" {
				s = v.gpu
			}
			c.size = fmt.Sprintf("%dx%dx%dx%dx%d", s.b, s.h, s.l, s.lk, s.d)
			c.flop = 4 * float64(s.b*s.h*s.l*s.lk*s.d)
			if v.bwd {
				c.flop *= 3.5 // forward recomputation + 2.5x for the backward
			}
			q := e.FromSlice(randF32(r, s.b*s.h*s.l*s.d), s.b, s.h, s.l, s.d)
			k := e.FromSlice(randF32(r, s.b*s.h*s.lk*s.d), s.b, s.h, s.lk, s.d)
			vv := e.FromSlice(randF32(r, s.b*s.h*s.lk*s.d), s.b, s.h, s.lk, s.d)
			if v.bwd {
				q.SetRequiresGrad(true)
				k.SetRequiresGrad(true)
				vv.SetRequiresGrad(true)
				run = func() {
					o := e.Attention(q, k, vv, 0.158, v.causal)
					e.BackwardWith(o, e.Full(1, o.Shape()...))
					gpu.ZeroGrad(q, k, vv)
				}
			} else {
				run = func() { e.NoGrad(func() { e.Attention(q, k, vv, 0.158, v.causal).Release() }) }
			}
			refRun, refFlop, refDone := matmulRef(e, r)
			c.refFlop, c.refGPU = refFlop, true
			return run, refRun, func() { q.Release(); k.Release(); vv.Release(); refDone() }
		}
	}
}
