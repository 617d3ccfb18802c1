package gpu

import (
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"
)

// BenchmarkAttention times Attention's forward and backward at SD-like
// shapes scaled down for lavapipe and reports GFLOP/s. The forward counts
// 4*B*H*Lq*Lk*D flops (two matmuls); the backward counts 2.5 times that
// (five matmul-sized products: S recomputed, dP, dV, dQ, dK), the
// convention of the FlashAttention papers, although the kernels here
// recompute S and dP once more (once per gradient kernel).
//
//	go test ./gpu -run '^$' -bench BenchmarkAttention -benchtime 3x
func BenchmarkAttention(b *testing.B) {
	shapes := []struct {
		b, h, lq, lk, d int
		causal          bool
		gpuOnly         bool // too slow for a CPU adapter
	}{
		{2, 8, 4096, 4096, 40, false, true},  // SD 1.5 self-attention at 64x64 latents
		{2, 8, 4096, 77, 40, false, true},    // and its cross-attention
		{1, 8, 1024, 1024, 40, false, false}, // the same scaled to finish in seconds on lavapipe
		{1, 8, 1024, 77, 40, false, false},
		{1, 8, 256, 256, 80, false, false},
		{1, 8, 64, 64, 160, false, false},
		{1, 12, 77, 77, 64, true, false}, // CLIP text encoder
	}
	for _, s := range shapes {
		name := fmt.Sprintf("B%dH%dLq%dLk%dD%d", s.b, s.h, s.lq, s.lk, s.d)
		if s.causal {
			name += "-causal"
		}
		flops := 4 * float64(s.b*s.h*s.lq*s.lk*s.d)
		if s.causal {
			flops /= 2
		}
		b.Run(name+"/fwd", func(b *testing.B) {
			e := engine(b)
			if s.gpuOnly && e.Info.Type == "cpu" {
				b.Skip("full-size shape: GPU adapters only")
			}
			q, k, v := benchQKV(e, s.b, s.h, s.lq, s.lk, s.d)
			defer releaseAll(q, k, v)
			scale := float32(1 / math.Sqrt(float64(s.d)))
			run := func() {
				e.NoGrad(func() { e.Attention(q, k, v, scale, s.causal).Release() })
				if err := e.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			run() // compile and warm up
			b.ResetTimer()
			for range b.N {
				run()
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(name+"/bwd", func(b *testing.B) {
			e := engine(b)
			if s.gpuOnly && e.Info.Type == "cpu" {
				b.Skip("full-size shape: GPU adapters only")
			}
			q, k, v := benchQKV(e, s.b, s.h, s.lq, s.lk, s.d)
			defer releaseAll(q, k, v)
			for _, t := range []*Tensor{q, k, v} {
				t.SetRequiresGrad(true)
			}
			scale := float32(1 / math.Sqrt(float64(s.d)))
			g := e.Full(1, s.b, s.h, s.lq, s.d)
			defer g.Release()
			var total time.Duration
			run := func() {
				out := e.Attention(q, k, v, scale, s.causal)
				if err := e.Sync(); err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				if err := e.BackwardWith(out, g.share()); err != nil {
					b.Fatal(err)
				}
				if err := e.Sync(); err != nil {
					b.Fatal(err)
				}
				total += time.Since(t0)
				out.Release()
				ZeroGrad(q, k, v)
			}
			run()
			total = 0
			b.ResetTimer()
			for range b.N {
				run()
			}
			b.ReportMetric(2.5*flops*float64(b.N)/total.Seconds()/1e9, "GFLOP/s")
		})
	}
}

func benchQKV(e *Engine, b, h, lq, lk, d int) (q, k, v *Tensor) {
	r := rand.New(rand.NewSource(1))
	mk := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	q = e.FromSlice(mk(b*h*lq*d), b, h, lq, d)
	k = e.FromSlice(mk(b*h*lk*d), b, h, lk, d)
	v = e.FromSlice(mk(b*h*lk*d), b, h, lk, d)
	return
}

func releaseAll(ts ...*Tensor) {
	for _, t := range ts {
		t.Release()
	}
}
