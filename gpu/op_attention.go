package gpu

import "fmt"

// Scaled dot-product attention, flash style (online softmax, O(L*D)
// memory). Forward: shaders/attention_fwd_direct.wgsl on CPU adapters
// (register-blocked, see attnDirect) or shaders/attention_fwd.wgsl on GPUs
// and for head dims not a multiple of 4; both save the per-row logsumexp.
// Backward: shaders/attention_bwd_delta.wgsl (D_i = rowsum(dO * O)), then
// the query gradient by query blocks and the key and value gradients by
// key blocks, recomputing P = exp(scale * S - lse) in both, so no two
// invocations write the same gradient element and no atomics are needed:
// attention_bwd_dq_direct.wgsl and attention_bwd_dkdv_direct.wgsl where the
// forward runs direct (see attnDqRows), else attention_bwd_dq.wgsl (one
// workgroup per query block) and attention_bwd_dkdv.wgsl (one workgroup per
// key block).
// Reference: ref.Attention / ref.AttentionBackward.

// maxHeadDim is the largest head dimension the attention kernels support.
const maxHeadDim = 160

// attnCfg is the specialisation of the attention kernels for one head
// dimension.
type attnCfg struct {
	d, dv  int // head dim, vec4s per row
	bk, tr int // keys (or queries) per shared block, rows per thread
}

func (c attnCfg) consts() string {
	return fmt.Sprintf("const D: u32 = %du; const DV: u32 = %du; const BK: u32 = %du; const TR: u32 = %du; "+
		"const KDV: u32 = %du; const TDV: u32 = %du;",
		c.d, c.dv, c.bk, c.tr, c.bk*c.dv, c.tr*c.dv)
}

// attnConfig picks the block sizes of attention kernel kind (attnFwd or
// attnBwd) for head dimension d: the largest key block (<= 64) whose two
// shared [BK, DV] vec4 tiles fit the workgroup storage limit (at most
// 32 KiB is used), and the rows per thread TR.
//
// TR trades registers for shared-memory traffic: each k/v (or q/dO) vec4
// read from shared memory feeds TR rows. On CPU adapters (lavapipe) TR is
// the largest value <= 3 whose per-thread row state stays within a budget
// measured on lavapipe: 64 vec4 for the forward (q and the output
// accumulator per row), 80 for the backward (k, v, dk, dv per key row);
// beyond it lavapipe got slower, and at D = 160 with TR = 2 the process
// crashed inside the driver. On GPUs TR is 1, as the row state
// must stay in registers: on an H200 (NVIDIA Vulkan) at B=2, H=8, L=4096,
// D=40, TR = 1 gave 10.6 TFLOP/s forward and 11.8 backward; TR = 2 gave
// 14.5 forward but 8.5 backward, and was slower at smaller shapes.
func (e *Engine) attnConfig(d int, kind attnKind) attnCfg {
	c := attnCfg{d: d, dv: (d + 3) / 4, tr: 1}
	limit := min(int(e.Limits.MaxComputeWorkgroupStorageSize), 32<<10)
	c.bk = 64
	for c.bk > 4 && 2*c.bk*c.dv*16+2*c.bk*4 > limit {
		c.bk /= 2
	}
	if e.Info.Type == "cpu" {
		vecs, budget := 2, 64
		if kind == attnBwd {
			vecs, budget = 4, 80
		}
		c.tr = max(1, min(3, budget/(vecs*c.dv)))
	}
	return c
}

// AttentionKernelEnv selects the attention kernels, forward and backward:
// "direct" (the register-blocked kernels for CPU adapters,
// shaders/attention_fwd_direct.wgsl, attention_bwd_dq_direct.wgsl and
// attention_bwd_dkdv_direct.wgsl, the default there) or "flash"
// (attention_fwd.wgsl, attention_bwd_dq.wgsl, attention_bwd_dkdv.wgsl, the
// default on GPUs and for head dims that are not a multiple of 4, which the
// direct kernels cannot read as vec4).
const AttentionKernelEnv = "INSTRUCTBOOTH_ATTENTION"

// attnDirectRows is the number of query rows one invocation of the direct
// forward kernel owns.
const attnDirectRows = 32

// attnDqRows and attnDkdvRows are the query rows one invocation of
// attention_bwd_dq_direct.wgsl owns and the key rows one invocation of
// attention_bwd_dkdv_direct.wgsl owns (the shaders' block sizes).
//
// Why the direct backward (attnDirect also selects it): the flash backward
// kernels stage k, v (or q, dO) blocks in workgroup memory and give each
// thread TR <= 3 rows, so on lavapipe they read one vec4 per 4*TR FMAs (8
// at D = 40, TR = 2); cmd/bench -op attn measured attn-self-bwd
// (1x8x1024x1024x40, forward + backward) at 0.32-0.68x the engine's matmul
// rate with them.
// The direct kernels keep 32x32 blocks of S and dP in mat4x4 accumulators
// as the forward does (dq: 224 vec4 accesses per 12288 FMAs, dk/dv: 320 per
// 16384; the shaders' headers count them). Measured against one another
// and the matmul in one process (CPU time, best of 6-10, the machine
// shared with a training job): 32x32 blocks dq 1.06-1.22x the matmul
// rate, dk/dv 0.98-1.15x; 16-row x 32 and 32 x 16-column blocks 10-20%
// slower; S and dP computed in one pass over the head dim no faster;
// leaving out the read-modify-write of the gradients (not a valid kernel,
// a measurement) would gain 12% (dq) and 24% (dk/dv), which larger blocks
// would buy with twice the live accumulators. With cmd/bench -op attn
// -min 2s, three runs each, old and new alternating: attn-self-bwd
// 0.32/0.68/0.58x (flash backward) against 0.83/1.27/0.86x (direct);
// the bench counts 3.5x the forward's flops while the kernels do 4.5x
// (the backward recomputes S and dP in both kernels). Cold JIT (no Mesa
// shader cache) is ~1.5x (dq) and ~2x (dk/dv) the direct forward's; Mesa's
// disk cache makes later runs ~1 s.
const (
	attnDqRows   = 32
	attnDkdvRows = 32
)

// attnDirect reports whether attention at head dim d runs the direct
// kernels (forward and backward).
//
// The direct kernel exists because on lavapipe every load from storage or
// workgroup memory is a loop over the SIMD lanes, and the flash kernel
// reads 2*D/4 vec4s per key for 4*TR*D flops (TR <= 3 query rows per
// invocation, bounded by private memory): 20 vec4 per 480 flops at D = 40.
// The direct kernel gives each invocation a 32-row x 32-key block of scores
// in registers and keeps the unnormalised output in o (read, rescaled and
// written back once per key block): 160 vec4 per 16384 flops per vec4 of
// the head dim, whatever D. Invocations take (slice, 32-row block) pairs
// in one linear order, so short sequences from many heads still fill the
// SIMD lanes. With cmd/bench -op attn on the 2-core machine (another
// training job running, so the figures move by ~20% between runs):
// attn-self (1x8x1024x1024x40) flash 0.35-0.47x the engine's matmul rate,
// direct 1.0-1.24x; attn-cross (Lk = 77) flash 0.23-0.29x, direct
// 0.79-1.06x. At L = 16..77 (toy models, CLIP) direct is 2-5x faster than
// flash. The shader's header lists the block sizes tried.
func (e *Engine) attnDirect(d int) bool {
	return e.cpuKernel(AttentionKernelEnv, "direct", "flash") && d%4 == 0
}

type attnKind int

const (
	attnFwd attnKind = iota
	attnBwd
)

// Attention returns softmax(scale * q k^T) v per batch and head: q
// [B, H, Lq, D], k and v [B, H, Lk, D] (Lk may differ from Lq), D <= 160;
// the output is [B, H, Lq, D]. When causal, key j is masked for query i < j.
// Memory is O(B*H*L*D): the scores are never stored; the forward saves the
// per-row logsumexp [B, H, Lq] for the backward (freed with the tape).
func (e *Engine) Attention(q, k, v *Tensor, scale float32, causal bool) *Tensor {
	if len(q.shape) != 4 || len(k.shape) != 4 || !sameShape(k.shape, v.shape) ||
		q.shape[0] != k.shape[0] || q.shape[1] != k.shape[1] || q.shape[3] != k.shape[3] {
		panic(fmt.Sprintf("gpu: Attention needs q [B, H, Lq, D] and k, v [B, H, Lk, D], got %v, %v, %v", q.shape, k.shape, v.shape))
	}
	B, H, Lq, D := q.shape[0], q.shape[1], q.shape[2], q.shape[3]
	Lk := k.shape[2]
	if D > maxHeadDim && !causal {
		return e.attentionWide(q, k, v, scale)
	}
	if D > maxHeadDim || D == 0 {
		panic(fmt.Sprintf("gpu: Attention head dimension %d not in [1, %d] (causal)", D, maxHeadDim))
	}
	if Lk == 0 && Lq > 0 {
		panic("gpu: Attention over zero keys")
	}
	out := e.alloc(B, H, Lq, D) // [B, H, Lq, D]
	if out.n == 0 {
		return out
	}
	BH := B * H
	lse := e.alloc(B, H, Lq) // [B, H, Lq]
	maxSlices := int(e.Limits.MaxComputeWorkgroupsPerDimension)
	if e.attnDirect(D) {
		kf := Kernel{File: "attention_fwd_direct.wgsl", Entry: "main"}
		blocks := (Lq + attnDirectRows - 1) / attnDirectRows // row blocks per slice
		e.rowChunks(BH, []int{Lq * D, Lk * D}, 0, func(h0, nh int) {
			wq := func(t *Tensor) Binding { return bindVec4(t.window(h0*Lq*D, nh*Lq*D)) }
			wk := func(t *Tensor) Binding { return bindVec4(t.window(h0*Lk*D, nh*Lk*D)) }
			e.Dispatch(kf, Params{Lq, Lk, scale, causal, h0, D / 4, nh}, e.Grid1D(nh*blocks, 8),
				wq(q), wk(k), wk(v), wq(out), lse.bind())
		})
	} else {
		cfg := e.attnConfig(D, attnFwd)
		kf := Kernel{File: "attention_fwd.wgsl", Entry: "main", Consts: cfg.consts()}
		rows := 64 * cfg.tr
		e.rowChunks(BH, []int{Lq * D, Lk * D}, maxSlices, func(h0, nh int) {
			wq := func(t *Tensor) Binding { return t.window(h0*Lq*D, nh*Lq*D) }
			wk := func(t *Tensor) Binding { return t.window(h0*Lk*D, nh*Lk*D) }
			e.Dispatch(kf, Params{Lq, Lk, scale, causal, h0}, [3]uint32{uint32((Lq + rows - 1) / rows), uint32(nh), 1},
				wq(q), wk(k), wk(v), wq(out), lse.bind())
		})
	}
	e.record(out, []*Tensor{q, k, v, lse}, func(g *Tensor) {
		e.attentionBackward(g, q, k, v, out, lse, scale, causal)
	})
	e.keepForBackward(out, lse)
	return out
}

// attentionBackward accumulates dq, dk and dv into those of q, k, v that
// require a gradient, from g = dL/dout, the forward output and its saved
// logsumexp.
func (e *Engine) attentionBackward(g, q, k, v, out, lse *Tensor, scale float32, causal bool) {
	B, H, Lq, D := q.shape[0], q.shape[1], q.shape[2], q.shape[3]
	BH := B * H
	// delta = rowsum(dO * O) [B, H, Lq].
	delta := e.alloc(B, H, Lq)
	e.rowChunks(BH*Lq, []int{D}, 0, func(r0, nr int) {
		e.Dispatch(Kernel{File: "attention_bwd_delta.wgsl", Entry: "main"}, Params{nr, D, r0}, e.Grid1D(nr, 64),
			g.window(r0*D, nr*D), out.window(r0*D, nr*D), delta.bind())
	})
	var dq, dk, dv *Tensor
	if q.requiresGrad {
		dq = e.alloc(q.shape...)
	}
	if k.requiresGrad || v.requiresGrad {
		dk, dv = e.alloc(k.shape...), e.alloc(v.shape...)
	}
	if e.attnDirect(D) {
		e.attentionBackwardDirect(g, q, k, v, lse, delta, dq, dk, dv, scale, causal)
	} else {
		e.attentionBackwardFlash(g, q, k, v, lse, delta, dq, dk, dv, scale, causal)
	}
	delta.Release()
	if dq != nil {
		q.accumulate(dq)
	}
	if dk != nil {
		if k.requiresGrad {
			k.accumulate(dk)
		} else {
			dk.Release()
		}
		if v.requiresGrad {
			v.accumulate(dv)
		} else {
			dv.Release()
		}
	}
}

// attentionBackwardDirect runs the direct backward kernels (CPU adapters,
// head dims that are multiples of 4): dq into dq and dk, dv into dk, dv
// (each nil when not wanted).
func (e *Engine) attentionBackwardDirect(g, q, k, v, lse, delta, dq, dk, dv *Tensor, scale float32, causal bool) {
	B, H, Lq, D := q.shape[0], q.shape[1], q.shape[2], q.shape[3]
	Lk := k.shape[2]
	e.rowChunks(B*H, []int{Lq * D, Lk * D}, 0, func(h0, nh int) {
		wq := func(t *Tensor) Binding { return bindVec4(t.window(h0*Lq*D, nh*Lq*D)) }
		wk := func(t *Tensor) Binding { return bindVec4(t.window(h0*Lk*D, nh*Lk*D)) }
		ps := Params{Lq, Lk, scale, causal, h0, D / 4, nh}
		if dq != nil {
			e.Dispatch(Kernel{File: "attention_bwd_dq_direct.wgsl", Entry: "main"}, ps, e.Grid1D(nh*ceilDiv(Lq, attnDqRows), 8),
				wq(q), wk(k), wk(v), wq(g), lse.bind(), delta.bind(), wq(dq))
		}
		if dk != nil {
			e.Dispatch(Kernel{File: "attention_bwd_dkdv_direct.wgsl", Entry: "main"}, ps, e.Grid1D(nh*ceilDiv(Lk, attnDkdvRows), 8),
				wq(q), wk(k), wk(v), wq(g), lse.bind(), delta.bind(), wk(dk), wk(dv))
		}
	})
}

// attentionBackwardFlash runs the flash backward kernels (GPUs, and head
// dims that are not a multiple of 4): dq into dq and dk, dv into dk, dv
// (each nil when not wanted).
func (e *Engine) attentionBackwardFlash(g, q, k, v, lse, delta, dq, dk, dv *Tensor, scale float32, causal bool) {
	B, H, Lq, D := q.shape[0], q.shape[1], q.shape[2], q.shape[3]
	Lk := k.shape[2]
	BH := B * H
	maxSlices := int(e.Limits.MaxComputeWorkgroupsPerDimension)
	cfg := e.attnConfig(D, attnBwd)
	e.rowChunks(BH, []int{Lq * D, Lk * D}, maxSlices, func(h0, nh int) {
		wq := func(t *Tensor) Binding { return t.window(h0*Lq*D, nh*Lq*D) }
		wk := func(t *Tensor) Binding { return t.window(h0*Lk*D, nh*Lk*D) }
		ps := Params{Lq, Lk, scale, causal, h0}
		if dq != nil {
			rows := 64 * cfg.tr
			e.Dispatch(Kernel{File: "attention_bwd_dq.wgsl", Entry: "main", Consts: cfg.consts()}, ps,
				[3]uint32{uint32((Lq + rows - 1) / rows), uint32(nh), 1},
				wq(q), wk(k), wk(v), wq(g), lse.bind(), delta.bind(), wq(dq))
		}
		if dk != nil {
			rows := 64 * cfg.tr
			e.Dispatch(Kernel{File: "attention_bwd_dkdv.wgsl", Entry: "main", Consts: cfg.consts()}, ps,
				[3]uint32{uint32((Lk + rows - 1) / rows), uint32(nh), 1},
				wq(q), wk(k), wk(v), wq(g), lse.bind(), delta.bind(), wk(dk), wk(dv))
		}
	})
}
