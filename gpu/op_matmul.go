package gpu

import (
	"fmt"
	"os"
)

// Matrix products. MatMul (this file) and Linear (op_linear.go) run every
// GEMM of their forward and backward passes through one shader,
// shaders/matmul_fwd.wgsl, with transpose flags; operands whose rows are not
// a multiple of 4 floats are first copied by shaders/matmul_pad.wgsl.
// Linear's bias gradient is shaders/matmul_bwd.wgsl.
// Reference: ref.MatMul / ref.MatMulBackward, ref.Linear / ref.LinearBackward.
//
// Two kernels, chosen per adapter (MatMulKernelEnv overrides):
//
// "direct", for CPU adapters (lavapipe). llvmpipe runs a workgroup's
// invocations 8 at a time in 256-bit SIMD lanes, but every storage or
// workgroup-memory load whose address is not a compile-time constant
// becomes a loop over the 8 lanes with a bounds check per component
// (about 20 cycles per lane per vec4, seen in the JIT code with perf),
// while the FMAs are cheap. So the kernel needs few loads per FMA: each
// invocation owns a 16x16 block of C in sixteen mat4x4 accumulators and
// reads A and B directly as vec4, no workgroup-memory staging. Per 4-deep
// step of K: 32 vec4 loads for 1024 FMAs. K past 1024 is split into
// dispatches that accumulate into C, so a workgroup's B panel stays in L2.
// Variants measured at 1024^3 on the 2-core machine, in CPU-seconds (other
// jobs were running): 4x4 per invocation ~6 GFLOP/s, 8x8 ~10-18, 16x16
// ~22-26 with mat4x4 products (~18-22 with scalar FMAs), 32x16 and 32x32 no
// better (spills, JIT up to 2.6 s); scalar instead of vec4 loads ~1.6x
// slower; a workgroup-memory copy with barriers every 16 or 32 k slower;
// 8 invocations along x sharing their A rows beat 4x2 and 2x4 lane shapes;
// a nested loop over reduction steps cost ~12% against one flat loop;
// runtime transpose flags ~5% against constants but one pipeline (each
// costs 1-4 s of JIT) instead of four. Reading A and B through textures
// instead (llvmpipe's texel fetch is a vector gather) measured 1.6-2x
// faster, but would need texture copies of every operand.
//
// "tiled", for GPUs: a 16x16 workgroup computes a 64x64 tile of C, 4x4 per
// invocation, from 16-deep slices staged in workgroup memory. On an NVIDIA
// H200 (Vulkan): 6.0, 19.8, 26.1 TFLOP/s at 512, 1024, 2048 (direct: 0.6,
// 2.3, 7.5); on lavapipe ~5 GFLOP/s.

// MatMulKernelEnv selects the GEMM kernel: "direct" (the register-blocked
// kernel tuned for CPU adapters, the default there) or "tiled" (the
// workgroup-memory kernel, the default on GPUs).
const MatMulKernelEnv = "INSTRUCTBOOTH_MATMUL"

// MatMulKernel names the GEMM kernel MatMul and Linear run on: "tiled" or
// "direct" (see MatMulKernelEnv).
func (e *Engine) MatMulKernel() string {
	if tiled, _ := e.gemmTiled(); tiled {
		return "tiled"
	}
	return "direct"
}

// mmDirectK is the longest K range one direct-kernel dispatch covers.
const mmDirectK = 1024

// gemmTiled reports whether e runs the tiled GEMM kernel, and the rows and
// columns of C one workgroup covers.
func (e *Engine) gemmTiled() (bool, int) {
	if !e.cpuKernel(MatMulKernelEnv, "direct", "tiled") {
		return true, 64
	}
	return false, 128
}

// cpuKernel reports whether the kernel tuned for CPU adapters runs: by
// default on CPU adapters; the environment variable env set to cpuName or
// otherName forces one or the other (tests run both).
func (e *Engine) cpuKernel(env, cpuName, otherName string) bool {
	switch os.Getenv(env) {
	case cpuName:
		return true
	case otherName:
		return false
	}
	return e.Info.Type == "cpu"
}

// gemmOp describes C[z] (+)= sum over r < nred of op(A[z, r]) @ op(B[z, r])
// (+ bias) for items z < batch: op(A) is [m, k], op(B) [k, n], C [m, n].
type gemmOp struct {
	a, b, c, bias  *Tensor
	transA, transB bool
	m, n, k        int
	batch          int // output items (grid z)
	sa, sb, sc     int // floats between items; 0 shares the operand
	nred           int // reduction steps summed into each item (0 means 1)
	ra, rb         int // floats between reduction steps
	accum          bool
}

// gemmSide is an operand as the kernel reads it: rows of cols floats, cols
// a multiple of 4 (a padded temporary when the tensor's rows were not).
type gemmSide struct {
	t    *Tensor
	tmp  bool
	cols int // row length in floats
	s, r int // item and reduction strides in floats
}

func (e *Engine) gemmSide(t *Tensor, cols, s, r int) gemmSide {
	if cols%4 == 0 {
		return gemmSide{t: t, cols: cols, s: s, r: r}
	}
	c4 := (cols + 3) &^ 3
	return gemmSide{t: e.repack(t, cols, c4), tmp: true, cols: c4, s: s / cols * c4, r: r / cols * c4}
}

// repack returns a Scratch copy of t with its rows of cols floats stored
// as rows of c4 floats (zero-padded).
func (e *Engine) repack(t *Tensor, cols, c4 int) *Tensor {
	rows := t.n / cols
	p, err := e.NewTensor(Scratch, rows, c4) // [rows, c4]
	if err != nil {
		panic(err)
	}
	e.copyRows(t, p, rows, cols, c4)
	return p
}

func (s gemmSide) release() {
	if s.tmp {
		s.t.Release()
	}
}

// copyRows copies src [rows, scols] into dst [rows, dcols], zero-filling
// or dropping the tail of each row.
func (e *Engine) copyRows(src, dst *Tensor, rows, scols, dcols int) {
	maxF := int(e.maxBinding/4) - 64
	rc := rows
	if w := max(scols, dcols); rc*w > maxF {
		rc = maxF / w
	}
	if rc < 1 {
		panic(fmt.Sprintf("gpu: a matmul row of %d floats exceeds the %s binding limit", max(scols, dcols), fmtBytes(e.maxBinding)))
	}
	for r0 := 0; r0 < rows; r0 += rc {
		r1 := min(rows, r0+rc)
		sb, s0 := e.span(src, r0*scols, (r1-r0)*scols)
		db, d0 := e.span(dst, r0*dcols, (r1-r0)*dcols)
		n := (r1 - r0) * dcols
		e.Dispatch(Kernel{File: "matmul_pad.wgsl", Entry: "main"}, Params{n, scols, dcols, s0, d0, 0, 0, 0}, e.Grid1D(n, 256), sb, db)
	}
}

// gemm records the GEMM g describes (not recorded on the tape).
func (e *Engine) gemm(g gemmOp) {
	if g.m == 0 || g.n == 0 || g.batch == 0 {
		return
	}
	if g.nred == 0 {
		g.nred = 1
	}
	// A shared B and a non-transposed A whose items follow each other make
	// one tall product: fewer partial tiles.
	if g.batch > 1 && g.nred == 1 && g.sb == 0 && !g.transA && g.sa == g.m*g.k && g.sc == g.m*g.n {
		g.m *= g.batch
		g.batch = 1
	}
	A := e.gemmSide(g.a, pick(g.transA, g.m, g.k), g.sa, g.ra)
	defer A.release()
	B := e.gemmSide(g.b, pick(g.transB, g.k, g.n), g.sb, g.rb)
	defer B.release()
	// C and the bias are written and read as vec4 too: with n not a multiple
	// of 4, compute into a padded copy of C and copy it back.
	ldc := g.n
	if g.n%4 != 0 {
		n4 := (g.n + 3) &^ 3
		rows := g.c.n / g.n
		var cp *Tensor
		if g.accum {
			cp = e.repack(g.c, g.n, n4)
		} else {
			var err error
			if cp, err = e.NewTensor(Scratch, rows, n4); err != nil { // [rows, n4]
				panic(err)
			}
		}
		defer cp.Release()
		defer e.copyRows(cp, g.c, rows, n4, g.n)
		if g.bias != nil {
			bp := e.repack(g.bias, g.n, n4)
			defer bp.Release()
			g.bias = bp
		}
		g.c, g.sc, ldc = cp, g.sc/g.n*n4, n4
	}

	// Chunks of zc items, mc rows of C, kc of K and rc reduction steps per
	// dispatch, shrunk until every window fits one binding and the grid the
	// workgroup-count limits. Chunks along K or r accumulate into C.
	tiled, mmTile := e.gemmTiled()
	maxF := int(e.maxBinding / 4)
	maxWG := int(e.Limits.MaxComputeWorkgroupsPerDimension)
	zc, mc, kc, rc := min(g.batch, maxWG), min(g.m, maxWG*mmTile), max(g.k, 1), g.nred
	fit := func(s gemmSide, rows int) bool {
		return s.t.Bytes() <= e.maxBinding || (zc-1)*s.s+(rc-1)*s.r+rows*s.cols+63 <= maxF
	}
	for {
		fa := fit(A, pick(g.transA, kc, mc))
		fb := fit(B, pick(g.transB, g.n, kc))
		fc := g.c.Bytes() <= e.maxBinding || (zc-1)*g.sc+mc*ldc+63 <= maxF
		if fa && fb && fc {
			break
		}
		switch {
		case rc > 1:
			rc = (rc + 1) / 2
		case zc > 1:
			zc = (zc + 1) / 2
		case !fa && !g.transA && mc > 4, !fc && mc > 4:
			mc = (mc/2 + 3) &^ 3
		case (!fa && g.transA || !fb && !g.transB) && kc > 4:
			kc = (kc/2 + 3) &^ 3
		default:
			panic(fmt.Sprintf("gpu: matmul [%d x %d] @ [%d x %d] (transposed %v, %v): a single row block does not fit the %s binding limit", g.m, g.k, g.k, g.n, g.transA, g.transB, fmtBytes(e.maxBinding)))
		}
	}
	// On the direct (CPU) kernel a workgroup streams its whole K range of B
	// through the cache once per 16 rows; past ~1024 that no longer stays
	// in L2 and K chunks that accumulate into C are faster (2048^3: ~20
	// GFLOP/s instead of ~15 on lavapipe).
	if !tiled && kc > mmDirectK {
		kc = (ceilDiv(kc, ceilDiv(kc, mmDirectK)) + 3) &^ 3
	}
	if g.bias != nil && g.bias.Bytes() > e.maxBinding {
		panic(fmt.Sprintf("gpu: matmul bias of %s exceeds the binding limit", fmtBytes(g.bias.Bytes())))
	}

	for zs := 0; zs < g.batch; zs += zc {
		ze := min(g.batch, zs+zc)
		for ms := 0; ms < g.m; ms += mc {
			me := min(g.m, ms+mc)
			for rs := 0; rs < g.nred; rs += rc {
				re := min(g.nred, rs+rc)
				for ks := 0; ks == 0 || ks < g.k; ks += kc {
					ke := min(g.k, ks+kc)
					// A's rows are M (or K when transposed), B's K (or N);
					// the other dimension is an offset along the rows.
					var aw, bw Binding
					var a0, b0 int
					if g.transA {
						aw, a0 = e.gemmWindow(A, zs, ze, rs, re, ks, ke, ms)
					} else {
						aw, a0 = e.gemmWindow(A, zs, ze, rs, re, ms, me, ks)
					}
					if g.transB {
						bw, b0 = e.gemmWindow(B, zs, ze, rs, re, 0, g.n, ks)
					} else {
						bw, b0 = e.gemmWindow(B, zs, ze, rs, re, ks, ke, 0)
					}
					cLo := zs*g.sc + ms*ldc
					cw, c0 := e.span(g.c, cLo, (ze-zs-1)*g.sc+(me-ms)*ldc)
					first := rs == 0 && ks == 0
					k := gemmKernel(tiled, g.accum || !first, g.bias != nil && first)
					p := Params{me - ms, g.n, ke - ks, re - rs,
						A.cols / 4, B.cols / 4, a0, b0,
						A.s / 4, B.s / 4, A.r / 4, B.r / 4,
						c0 / 4, g.sc / 4, g.transA, g.transB,
						ldc / 4, 0, 0, 0}
					grid := [3]uint32{uint32(ceilDiv(g.n, mmTile)), uint32(ceilDiv(me-ms, mmTile)), uint32(ze - zs)}
					if g.bias != nil && first {
						e.Dispatch(k, p, grid, aw, bw, cw, g.bias.bind())
					} else {
						e.Dispatch(k, p, grid, aw, bw, cw)
					}
				}
			}
		}
	}
}

// gemmWindow binds items [zs, ze), reduction steps [rs, re) and rows
// [r0, r1) of each item of s and returns the binding and the vec4 index of
// the first of those rows plus off floats (off a multiple of 4).
func (e *Engine) gemmWindow(s gemmSide, zs, ze, rs, re, r0, r1, off int) (Binding, int) {
	lo := zs*s.s + rs*s.r + r0*s.cols
	b, at := e.span(s.t, lo, (ze-zs-1)*s.s+(re-rs-1)*s.r+(r1-r0)*s.cols)
	return b, (at + off) / 4
}

func pick(c bool, x, y int) int {
	if c {
		return x
	}
	return y
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// gemmKernel returns the GEMM pipeline: one per (kernel, accumulate, bias),
// the transposes are parameters.
func gemmKernel(tiled, accum, bias bool) Kernel {
	entry := "main"
	if tiled {
		entry = "tiled"
	}
	if bias {
		entry += "_bias"
	}
	return Kernel{File: "matmul_fwd.wgsl", Entry: entry, Consts: fmt.Sprintf("const ACCUM: bool = %v;", accum)}
}

// mmShape returns M, K, N and the batch dimensions of op(a) @ op(b) under
// MatMul's rules, and whether b is shared across a's batch.
func mmShape(a, b *Tensor, transA, transB bool) (m, k, n int, batch []int, shared bool) {
	ra, rb := len(a.shape), len(b.shape)
	if ra < 2 || rb < 2 {
		panic(fmt.Sprintf("gpu: MatMul needs matrices (rank >= 2), got %v and %v", a.shape, b.shape))
	}
	m, k = a.shape[ra-2], a.shape[ra-1]
	if transA {
		m, k = k, m
	}
	kb, n := b.shape[rb-2], b.shape[rb-1]
	if transB {
		kb, n = n, kb
	}
	batch = a.shape[:ra-2]
	shared = rb == 2 && ra > 2
	if !shared && !sameShape(batch, b.shape[:rb-2]) {
		panic(fmt.Sprintf("gpu: MatMul batch dimensions differ: %v and %v (b must have a's batch dimensions or none)", a.shape, b.shape))
	}
	if k != kb {
		panic(fmt.Sprintf("gpu: MatMul inner dimensions differ: %v%s @ %v%s", a.shape, tSuffix(transA), b.shape, tSuffix(transB)))
	}
	return
}

func tSuffix(t bool) string {
	if t {
		return "^T"
	}
	return ""
}

// MatMul returns op(a) @ op(b), op(x) = x^T (of the last two dimensions)
// when the flag is set. a is [..., M, K] ([..., K, M] when transA), b is
// [..., K, N] ([..., N, K] when transB) with the same batch dimensions as
// a, or 2-D: one matrix shared by every batch item (x[B, T, K] @ W^T).
// The result is [..., M, N]. Gradients: dA = G @ op(B)^T, dB = op(A)^T @ G,
// summed over the batch for a shared b.
func (e *Engine) MatMul(a, b *Tensor, transA, transB bool) *Tensor {
	m, k, n, bdims, shared := mmShape(a, b, transA, transB)
	batch := numel(bdims)
	out := e.alloc(append(append([]int(nil), bdims...), m, n)...) // [..., M, N]
	sb := k * n
	if shared {
		sb = 0
	}
	e.gemm(gemmOp{a: a, b: b, c: out, transA: transA, transB: transB, m: m, n: n, k: k,
		batch: batch, sa: m * k, sb: sb, sc: m * n})
	e.record(out, []*Tensor{a, b}, func(g *Tensor) {
		if a.requiresGrad {
			da := e.alloc(a.shape...)
			if !transA { // dA [M, K] = G [M, N] @ op(B)^T
				e.gemm(gemmOp{a: g, b: b, c: da, transB: !transB, m: m, n: k, k: n,
					batch: batch, sa: m * n, sb: sb, sc: m * k})
			} else { // dA [K, M] = op(B) [K, N] @ G^T
				e.gemm(gemmOp{a: b, b: g, c: da, transA: transB, transB: true, m: k, n: m, k: n,
					batch: batch, sa: sb, sb: m * n, sc: k * m})
			}
			a.accumulate(da)
		}
		if b.requiresGrad {
			db := e.alloc(b.shape...)
			var op gemmOp
			if !transB { // dB [K, N] = op(A)^T [K, M] @ G [M, N]
				op = gemmOp{a: a, b: g, c: db, transA: !transA, m: k, n: n, k: m,
					batch: batch, sa: m * k, sb: m * n, sc: k * n}
			} else { // dB [N, K] = G^T [N, M] @ op(A) [M, K]
				op = gemmOp{a: g, b: a, c: db, transA: true, transB: transA, m: n, n: k, k: m,
					batch: batch, sa: m * n, sb: m * k, sc: n * k}
			}
			if shared { // one dB: sum the items as reduction steps
				op.nred, op.ra, op.rb = op.batch, op.sa, op.sb
				op.batch, op.sa, op.sb, op.sc = 1, 0, 0, 0
			}
			e.gemm(op)
			b.accumulate(db)
		}
	})
	return out
}
