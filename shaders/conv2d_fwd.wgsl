// conv2d_fwd: out = conv2d(x, w) + bias (PyTorch layouts, no dilation or
// groups) as an implicit GEMM; no im2col buffer is ever built:
//   C[M, NC] = A[M, K] * B[K, NC],  M = Cout, NC = N*Ho*Wo, K = Cin*KH*KW,
//   A[co, k] = w[co, k]              (w [Cout, Cin, KH, KW] is row-major [Cout, K]),
//   B[k, j]  = x[n, ci, oh*STRIDE - PAD + kh, ow*STRIDE - PAD + kw]  (0 outside the image),
//   k = (ci, kh, kw), j = (n, oh, ow).
//
// Go prepends (Kernel.Consts; this naga has no constant expressions):
//   KH, KW, KHW = KH*KW, STRIDE, PAD      the convolution;
//   TM4, TN4 in {1, 2, 4}                 each thread owns a (4*TM4) x (4*TN4) block;
//   BM = 32*TM4, BN = 32*TN4, BM4 = BM/4, BN4 = BN/4   the workgroup's tile.
// The tile machinery (8x8 threads, K in steps of BK = 16 through workgroup
// memory, outer-product accumulation) is the same in conv2d_fwd.wgsl,
// conv2d_bwd_input.wgsl and conv2d_bwd_weight.wgsl; only the staging
// (`stage`), the epilogue (`col_base`, `store`) and the parameters differ.
// Staging: thread t loads A rows t and t+64 (those < BM) and B columns t and
// t+64 (those < BN) for all BK k of a step, so per-row and per-column index
// math is done once per kernel. Out-of-range rows, columns and k read 0.
// Accumulators are named mat4x4 variables, not arrays: CPU drivers
// (lavapipe) keep private arrays in memory, and each of their vector loads
// from memory loops over the SIMD lanes, so big register blocks
// (TM4 = TN4 = 4 on CPUs) pay most.
//
// One dispatch computes a block of the problem (Go splits tensors larger than
// one binding): images [0, nb) of the x and out windows, output channels
// co0 + [0, m), input channels ci0 + [0, kdim/KHW), columns j0 + [0, BN*groups.x).
// Addresses (ci, co local to the block, n local to the windows):
//   x:   x_off + n*x_img + ci*H*W + ih*W + iw
//   out: o_off + n*o_img + co*Ho*Wo + oh*Wo + ow
//   w:   (co0 + co)*wrow + ci0*KHW + k        bias: co0 + co
// flags: bit 0 adds bias, bit 1 accumulates into out (later input-channel blocks).
//
// Bindings: 0 params; 1 x; 2 w; 3 bias (any buffer when flags bit 0 is clear);
//           4 out (read_write).
// Dispatch: (ceil(columns / BN), ceil(m / BM), 1), columns <= 65535*BN per dispatch.
struct P {
  m: u32, ncol: u32, kdim: u32, wrow: u32,
  ci0: u32, co0: u32, j0: u32, flags: u32,
  h: u32, w: u32, ho: u32, wo: u32,
  x_off: u32, x_img: u32, o_off: u32, o_img: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;


const BK: u32 = 16u;
// Tiles [BK][BM] and [BK][BN] as vec4 (BM, BN <= 128).
var<workgroup> ta: array<vec4<f32>, 512>;
var<workgroup> tb: array<vec4<f32>, 512>;

fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(a.x * b, a.y * b, a.z * b, a.w * b);
}

// stage_a loads A row r (tile-local) for k0 + [0, nk).
fn stage_a(r: u32, row0: u32, k0: u32, nk: u32) {
  let ok = row0 + r < p.m;
  let base = (p.co0 + row0 + r) * p.wrow + p.ci0 * KHW;
  for (var kk = 0u; kk < nk; kk++) {
    let k = k0 + kk;
    var v = 0.0;
    if (ok) { v = wt[base + k]; }
    ta[kk * BM4 + r / 4u][r % 4u] = v;
  }
}

// stage_b loads B column c (tile-local; global column j) for k0 + [0, nk).
fn stage_b(c: u32, j: u32, k0: u32, nk: u32) {
  let howo = p.ho * p.wo;
  let pix = j % howo;
  let base = p.x_off + (j / howo) * p.x_img;
  let ih0 = i32((pix / p.wo) * STRIDE) - i32(PAD);
  let iw0 = i32((pix % p.wo) * STRIDE) - i32(PAD);
  let ok = j < p.ncol;
  let hw = p.h * p.w;
  for (var kk = 0u; kk < nk; kk++) {
    let k = k0 + kk;
    let rem = k % KHW;
    let ih = ih0 + i32(rem / KW);
    let iw = iw0 + i32(rem % KW);
    var v = 0.0;
    if (ok && ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
      v = x[base + (k / KHW) * hw + u32(ih) * p.w + u32(iw)];
    }
    tb[kk * BN4 + c / 4u][c % 4u] = v;
  }
}

fn stage(t: u32, row0: u32, col0: u32, k0: u32, nk: u32) {
  if (t < BM) { stage_a(t, row0, k0, nk); }
  if (t + 64u < BM) { stage_a(t + 64u, row0, k0, nk); }
  if (t < BN) { stage_b(t, col0 + t, k0, nk); }
  if (t + 64u < BN) { stage_b(t + 64u, col0 + t + 64u, k0, nk); }
}

// col_base is the out address of GEMM column j (row 0).
fn col_base(j: u32) -> u32 {
  let howo = p.ho * p.wo;
  return p.o_off + (j / howo) * p.o_img + j % howo;
}

// store writes output channel co (block-local) at column address base.
fn store(co: u32, base: u32, v: f32) {
  let o = base + co * p.ho * p.wo;
  var r = v;
  if ((p.flags & 1u) != 0u) { r += bias[p.co0 + co]; }
  if ((p.flags & 2u) != 0u) { r += out[o]; }
  out[o] = r;
}

// fma_row adds the outer products of a (4 rows of the thread's block) with
// its TN4 column vectors b0..b3 into the accumulators c0..c3.
fn fma_row(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>,
           c0: ptr<function, mat4x4<f32>>, c1: ptr<function, mat4x4<f32>>,
           c2: ptr<function, mat4x4<f32>>, c3: ptr<function, mat4x4<f32>>) {
  *c0 += outer(a, b0);
  if (TN4 > 1u) { *c1 += outer(a, b1); }
  if (TN4 > 2u) {
    *c2 += outer(a, b2);
    *c3 += outer(a, b3);
  }
}

@compute @workgroup_size(8, 8)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = lid.y * 8u + lid.x;
  let row0 = wid.y * BM;
  let col0 = p.j0 + wid.x * BN;
  // acc_rc holds rows 4r..4r+3 (one per matrix column) and columns
  // 4c..4c+3 of this thread's block; only r < TM4, c < TN4 are used.
  var acc00 = mat4x4<f32>(); var acc01 = mat4x4<f32>(); var acc02 = mat4x4<f32>(); var acc03 = mat4x4<f32>();
  var acc10 = mat4x4<f32>(); var acc11 = mat4x4<f32>(); var acc12 = mat4x4<f32>(); var acc13 = mat4x4<f32>();
  var acc20 = mat4x4<f32>(); var acc21 = mat4x4<f32>(); var acc22 = mat4x4<f32>(); var acc23 = mat4x4<f32>();
  var acc30 = mat4x4<f32>(); var acc31 = mat4x4<f32>(); var acc32 = mat4x4<f32>(); var acc33 = mat4x4<f32>();
  for (var k0 = 0u; k0 < p.kdim; k0 += BK) {
    // A runtime trip count keeps the compiler from unrolling these loops
    // (compile time on CPU drivers) and skips the zero tail of K.
    let nk = min(BK, p.kdim - k0);
    stage(t, row0, col0, k0, nk);
    workgroupBarrier();
    for (var kk = 0u; kk < nk; kk++) {
      let ai = kk * BM4 + lid.y * TM4;
      let bi = kk * BN4 + lid.x * TN4;
      let b0 = tb[bi];
      var b1 = b0;
      var b2 = b0;
      var b3 = b0;
      if (TN4 > 1u) { b1 = tb[bi + 1u]; }
      if (TN4 > 2u) {
        b2 = tb[bi + 2u];
        b3 = tb[bi + 3u];
      }
      fma_row(ta[ai], b0, b1, b2, b3, &acc00, &acc01, &acc02, &acc03);
      if (TM4 > 1u) { fma_row(ta[ai + 1u], b0, b1, b2, b3, &acc10, &acc11, &acc12, &acc13); }
      if (TM4 > 2u) {
        fma_row(ta[ai + 2u], b0, b1, b2, b3, &acc20, &acc21, &acc22, &acc23);
        fma_row(ta[ai + 3u], b0, b1, b2, b3, &acc30, &acc31, &acc32, &acc33);
      }
    }
    workgroupBarrier();
  }
  // Epilogue: a single store site with runtime bounds keeps the code (and
  // the CPU driver's compile time) small; it runs once per thread.
  var res = array<mat4x4<f32>, 16>(acc00, acc01, acc02, acc03, acc10, acc11, acc12, acc13,
                                   acc20, acc21, acc22, acc23, acc30, acc31, acc32, acc33);
  let r0 = row0 + lid.y * 4u * TM4;
  let c0 = col0 + lid.x * 4u * TN4;
  let nr = min(4u * TM4, select(0u, p.m - r0, r0 < p.m));
  let nc = min(4u * TN4, select(0u, p.ncol - c0, c0 < p.ncol));
  for (var c = 0u; c < nc; c++) {
    let base = col_base(c0 + c);
    for (var i = 0u; i < nr; i++) {
      store(r0 + i, base, res[(i / 4u) * 4u + c / 4u][i % 4u][c % 4u]);
    }
  }
}
