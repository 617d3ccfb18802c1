package gpu

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/instructbooth/instructbooth/gpu/ref"
)

// TestAttention runs every case, forward and backward, through both kernel
// sets: "direct" (attention_fwd_direct.wgsl, attention_bwd_dq_direct.wgsl,
// attention_bwd_dkdv_direct.wgsl: the default on CPU adapters, for head dims
// that are a multiple of 4; others fall back to flash) and "flash" (the
// default on GPUs).
func TestAttention(t *testing.T) {
	cases := []struct {
		b, h, lq, lk, d int
		causal          bool
		spread          float64 // inputs uniform in [-spread, spread] (0: 1)
	}{
		{2, 2, 37, 53, 24, false, 0}, // Lq != Lk, nothing a multiple of a block
		{2, 2, 37, 53, 24, true, 0},
		{1, 2, 53, 37, 24, true, 0},   // more queries than keys, causal
		{1, 1, 200, 200, 40, true, 0}, // several key blocks and query workgroups
		{1, 1, 200, 131, 40, false, 0},
		{1, 2, 70, 77, 80, false, 0},  // cross-attention-like, Lk = 77
		{1, 1, 5, 130, 160, false, 0}, // largest head dim, several key blocks
		{1, 1, 9, 11, 3, true, 0},     // head dim not a multiple of 4 (flash only)
		{1, 1, 300, 300, 16, true, 0}, // causal over two direct workgroups (256 rows)
		{1, 2, 33, 65, 8, false, 0},   // toy head dim; one row past 32, one key past 64
		// Causal with keys past the last query: the direct dk/dv invocations
		// owning keys 32..99 see no query and must write zeros.
		{1, 2, 20, 100, 16, true, 0},
		// Scores of +-30: the running max moves between key blocks, so the
		// rescaling of the partial output is exercised.
		{1, 1, 40, 100, 12, false, 3},
	}
	for _, kernel := range []string{"direct", "flash"} {
		t.Run(kernel, func(t *testing.T) {
			t.Setenv(AttentionKernelEnv, kernel)
			for _, c := range cases {
				name := fmt.Sprintf("B%dH%dLq%dLk%dD%d", c.b, c.h, c.lq, c.lk, c.d)
				if c.causal {
					name += "-causal"
				}
				if c.spread > 0 {
					name += fmt.Sprintf("-spread%g", c.spread)
				}
				t.Run(name, func(t *testing.T) {
					// Outputs come from the buffer pool: leave NaNs in buffers
					// of the sizes of this case, so an element a kernel fails
					// to write shows.
					dirtyPool(engine(t), c.b*c.h*c.lq*c.d, c.b*c.h*c.lk*c.d)
					scale := 1 / math.Sqrt(float64(c.d))
					var gen func(r *rand.Rand, i int, shape []int) []float64
					if c.spread > 0 {
						gen = func(r *rand.Rand, i int, shape []int) []float64 {
							n := 1
							for _, s := range shape {
								n *= s
							}
							x := randData(r, n)
							for j := range x {
								x[j] *= c.spread
							}
							return x
						}
					}
					checkOp(t, opCase{
						name:   "attention " + name,
						shapes: [][]int{{c.b, c.h, c.lq, c.d}, {c.b, c.h, c.lk, c.d}, {c.b, c.h, c.lk, c.d}},
						gen:    gen,
						gpu: func(e *Engine, in []*Tensor) *Tensor {
							return e.Attention(in[0], in[1], in[2], float32(scale), c.causal)
						},
						ref: func(in []*ref.T) *ref.T { return ref.Attention(in[0], in[1], in[2], scale, c.causal) },
						refBack: func(in []*ref.T, g *ref.T) []*ref.T {
							dq, dk, dv := ref.AttentionBackward(in[0], in[1], in[2], g, scale, c.causal)
							return []*ref.T{dq, dk, dv}
						},
					})
				})
			}
		})
	}
}

// dirtyPool returns to the engine's pool eight NaN-filled buffers of each
// of the given element counts.
func dirtyPool(e *Engine, sizes ...int) {
	var ts []*Tensor
	for _, n := range sizes {
		for range 8 {
			ts = append(ts, e.Full(float32(math.NaN()), n))
		}
	}
	if err := e.Sync(); err != nil {
		panic(err)
	}
	releaseAll(ts...)
}

// TestAttention_memoryIsLinear checks that forward and backward allocate
// O(L*D), not the L x L scores: at L = 2048, D = 8 one score matrix would be
// 16 MiB while q, k, v are 64 KiB each.
func TestAttention_memoryIsLinear(t *testing.T) {
	e := engine(t)
	const L, D = 2048, 8
	q, k, v := benchQKV(e, 1, 1, L, L, D)
	defer releaseAll(q, k, v)
	for _, x := range []*Tensor{q, k, v} {
		x.SetRequiresGrad(true)
	}
	defer ZeroGrad(q, k, v)
	before := e.MemStats().LiveTotal
	e.ResetPeaks()
	out := e.Attention(q, k, v, 0.3, true)
	if err := e.BackwardWith(out, e.Full(1, out.Shape()...)); err != nil {
		t.Fatal(err)
	}
	out.Release()
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	peak := e.MemStats().PeakTotal - before
	// out, g, dq, dk, dv (64 KiB each) and lse, delta (8 KiB each).
	if limit := uint64(8 * L * D * 4); peak > limit {
		t.Fatalf("attention peaked at %s over its inputs, want at most %s", fmtBytes(peak), fmtBytes(limit))
	}
	t.Logf("peak %s above the inputs", fmtBytes(peak))
	for i, g := range q.Grad.MustRead() {
		if math.IsNaN(float64(g)) || math.IsInf(float64(g), 0) {
			t.Fatalf("dq[%d] = %v", i, g)
		}
	}
}

// TestAttention_chunked splits the (batch, head) slices over several
// dispatches with a 32 KiB binding limit (4 slices of k per window here).
func TestAttention_chunked(t *testing.T) {
	withSmallBinding(t, 32<<10, func() {
		const scale = 0.2
		checkOp(t, opCase{
			name:   "attention-chunked",
			shapes: [][]int{{2, 5, 37, 32}, {2, 5, 53, 32}, {2, 5, 53, 32}},
			gpu: func(e *Engine, in []*Tensor) *Tensor {
				return e.Attention(in[0], in[1], in[2], scale, true)
			},
			ref: func(in []*ref.T) *ref.T { return ref.Attention(in[0], in[1], in[2], scale, true) },
			refBack: func(in []*ref.T, g *ref.T) []*ref.T {
				dq, dk, dv := ref.AttentionBackward(in[0], in[1], in[2], g, scale, true)
				return []*ref.T{dq, dk, dv}
			},
		})
	})
}

// TestAttention_wideHeads covers heads wider than the flash kernels take
// (the VAE's single 512-channel head), in several query blocks.
func TestAttention_wideHeads(t *testing.T) {
	old := wideScoreBudget
	wideScoreBudget = 4 * 2 * 7 * 23 // force three query blocks
	defer func() { wideScoreBudget = old }()
	checkOp(t, opCase{
		name:   "attention D=200",
		shapes: [][]int{{1, 2, 17, 200}, {1, 2, 23, 200}, {1, 2, 23, 200}},
		gpu:    func(e *Engine, in []*Tensor) *Tensor { return e.Attention(in[0], in[1], in[2], 0.07, false) },
		ref:    func(in []*ref.T) *ref.T { return ref.Attention(in[0], in[1], in[2], 0.07, false) },
		refBack: func(in []*ref.T, g *ref.T) []*ref.T {
			dq, dk, dv := ref.AttentionBackward(in[0], in[1], in[2], g, 0.07, false)
			return []*ref.T{dq, dk, dv}
		},
	})
}
