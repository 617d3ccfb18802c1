// conv2d_bwd_weight: dw = dL/dw of out = conv2d(x, w) as an implicit GEMM
// over the output pixels (no im2col buffer is built):
//   C[M, NC] = A[M, K] * B[K, NC],  M = Cout, NC = Cin*KH*KW, K = N*Ho*Wo,
//   A[co, k] = g[n, co, oh, ow],
//   B[k, c]  = x[n, ci, oh*STRIDE - PAD + kh, ow*STRIDE - PAD + kw]  (0 outside the image),
//   k = (n, oh, ow), c = (ci, kh, kw).
// Every thread walks k in order, so (n, oh, ow) is carried from one k to the
// next with compares instead of divisions.
//
// Go prepends (Kernel.Consts; this naga has no constant expressions):
//   KH, KW, KHW = KH*KW, STRIDE, PAD      the convolution;
//   TM4, TN4 in {1, 2, 4}                 each thread owns a (4*TM4) x (4*TN4) block;
//   BM = 32*TM4, BN = 32*TN4              the workgroup's tile;
//   BK, QS = BK/4, TA_LEN = BM*QS, TB_LEN = BN*QS   the K step and tile storage;
//   GVEC: bool                            Ho*Wo is a multiple of 4: stage A with vec4 loads.
// The tile machinery is the same in conv2d_fwd.wgsl, conv2d_bwd_input.wgsl
// and conv2d_bwd_weight.wgsl; only the staging (`stage`), the epilogue
// (`col_base`, `store`) and the parameters differ. 8x8 threads; K advances
// BK at a time through workgroup memory, where both tiles are stored
// k-contiguous: ta[row*QS + q] and tb[col*QS + q] hold k = 4q..4q+3 of a
// row of A and a column of B. Thread t stages A rows t and t+64 (those < BM) and
// B columns t and t+64 (those < BN), so per-row and per-column index math is
// done once per kernel and every workgroup store is a whole vec4.
// Out-of-range rows, columns and k read 0.
// Compute, per 4 k: the thread's rows and columns come in as 4x4 matrices
// (4 rows or columns x 4 k) and each 4x4 block of the result gains
// transpose(B) * A. Accumulators are named mat4x4 variables, not arrays:
// CPU drivers (lavapipe) keep private arrays in memory, and each of their
// loads from memory loops over the SIMD lanes, so what counts there is
// loads per FMA: big blocks (TM4 = TN4 = 4 on CPUs) and vec4 loads.
//
// One dispatch computes a block (Go splits tensors larger than one binding):
// images [0, nb) of the g and x windows (kdim = nb*Ho*Wo), output channels
// co0 + [0, m), input channels ci0 + [0, ncol/KHW).
// Addresses (ci, co local to the block, n local to the windows):
//   g:  g_off + n*g_img + co*Ho*Wo + oh*Wo + ow   (floats)
//   x:  x_off + n*x_img + ci*H*W + ih*W + iw
//   dw: (co0 + co)*wrow + ci0*KHW + c            (wrow = Cin*KHW)
// flags: bit 1 accumulates into dw (later image blocks).
//
// Bindings: 0 params; 1 g; 2 x; 3 dw (read_write).
// Dispatch: (ceil(ncol / BN), ceil(m / BM), 1).
struct P {
  m: u32, ncol: u32, kdim: u32, wrow: u32,
  ci0: u32, co0: u32, j0: u32, flags: u32,
  h: u32, w: u32, ho: u32, wo: u32,
  g_off: u32, g_img: u32, x_off: u32, x_img: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<vec4<f32>>; // bound in whole vec4s
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;


// The (n, oh, ow) of the next k this thread stages (k advances in order).
var<private> kn: u32;
var<private> koh: u32;
var<private> kow: u32;

// load_b reads B[k, j] for global column j at the current (kn, koh, kow).
fn load_b(j: u32) -> f32 {
  let ci = j / KHW;
  let rem = j % KHW;
  let ih = i32(koh * STRIDE + rem / KW) - i32(PAD);
  let iw = i32(kow * STRIDE + rem % KW) - i32(PAD);
  if (j < p.ncol && ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
    return x[p.x_off + kn * p.x_img + ci * p.h * p.w + u32(ih) * p.w + u32(iw)];
  }
  return 0.0;
}

// load_a reads A[row, k] (block-local output channel) at the current k.
fn load_a(row: u32) -> f32 {
  let e = p.g_off + kn * p.g_img + row * p.ho * p.wo + koh * p.wo + kow;
  return g[e / 4u][e % 4u];
}

// stage stages A rows t, t+64 and B columns t, t+64 for k0 + [0, nk). With
// GVEC (Ho*Wo and the g window's offsets multiples of 4), four consecutive
// k of a row of A lie in one image and are one aligned vec4 of g.
fn stage(t: u32, row0: u32, col0: u32, k0: u32, nk: u32) {
  let howo = p.ho * p.wo;
  let a0ok = t < BM && row0 + t < p.m;
  let a1ok = t + 64u < BM && row0 + t + 64u < p.m;
  for (var q = 0u; q < (nk + 3u) / 4u; q++) {
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var b0 = vec4<f32>(0.0);
    var b1 = vec4<f32>(0.0);
    if (GVEC) {
      let kin = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(nk);
      let e = p.g_off + kn * p.g_img + koh * p.wo + kow;
      if (a0ok) { a0 = select(vec4<f32>(0.0), g[(e + (row0 + t) * howo) / 4u], kin); }
      if (a1ok) { a1 = select(vec4<f32>(0.0), g[(e + (row0 + t + 64u) * howo) / 4u], kin); }
    }
    for (var i = 0u; i < 4u; i++) {
      if (4u * q + i < nk) {
        if (!GVEC) {
          if (a0ok) { a0[i] = load_a(row0 + t); }
          if (a1ok) { a1[i] = load_a(row0 + t + 64u); }
        }
        if (t < BN) { b0[i] = load_b(col0 + t); }
        if (t + 64u < BN) { b1[i] = load_b(col0 + t + 64u); }
      }
      // Advance (n, oh, ow) to the next k.
      kow += 1u;
      if (kow == p.wo) {
        kow = 0u;
        koh += 1u;
        if (koh == p.ho) {
          koh = 0u;
          kn += 1u;
        }
      }
    }
    if (t < BM) { ta[t * QS + q] = a0; }
    if (t + 64u < BM) { ta[(t + 64u) * QS + q] = a1; }
    if (t < BN) { tb[t * QS + q] = b0; }
    if (t + 64u < BN) { tb[(t + 64u) * QS + q] = b1; }
  }
}

// col_base is the dw offset of GEMM column j (row 0).
fn col_base(j: u32) -> u32 { return p.ci0 * KHW + j; }

// store writes output channel co (block-local) at column offset base.
fn store(co: u32, base: u32, v: f32) {
  let o = (p.co0 + co) * p.wrow + base;
  var r = v;
  if ((p.flags & 2u) != 0u) { r += dw[o]; }
  dw[o] = r;
}

//#include "conv2d_gemm_lib.wgsl"
