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
//   BM = 32*TM4, BN = 32*TN4              the workgroup's tile;
//   BK, QS = BK/4, TA_LEN = BM*QS, TB_LEN = BN*QS   the K step and tile storage;
//   AVEC: bool                            w rows are vec4-aligned (Cin*KHW and ci0*KHW
//                                         multiples of 4): stage A with vec4 loads.
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
// One dispatch computes a block of the problem (Go splits tensors larger than
// one binding): images [0, nb) of the x and out windows, output channels
// co0 + [0, m), input channels ci0 + [0, kdim/KHW), columns j0 + [0, BN*groups.x).
// Addresses (ci, co local to the block, n local to the windows):
//   x:   x_off + n*x_img + ci*H*W + ih*W + iw
//   out: o_off + n*o_img + co*Ho*Wo + oh*Wo + ow
//   w:   (co0 + co)*wrow + ci0*KHW + k  (floats)  bias: co0 + co
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
@group(0) @binding(2) var<storage, read> wt: array<vec4<f32>>; // bound in whole vec4s
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;


// stage_a stages A row r (tile-local) for k0 + [0, nk): vec4 loads when w's
// rows are vec4-aligned (AVEC), else four scalar loads per vec4.
fn stage_a(r: u32, row0: u32, k0: u32, nk: u32) {
  let ok = row0 + r < p.m;
  let base = (p.co0 + row0 + r) * p.wrow + p.ci0 * KHW + k0;
  for (var q = 0u; q < (nk + 3u) / 4u; q++) {
    let k = 4u * q;
    var v = vec4<f32>(0.0);
    if (ok) {
      if (AVEC) {
        v = select(vec4<f32>(0.0), wt[(base + k) / 4u], vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(nk));
      } else {
        for (var i = 0u; i < 4u; i++) {
          let e = base + k + i;
          if (k + i < nk) { v[i] = wt[e / 4u][e % 4u]; }
        }
      }
    }
    ta[r * QS + q] = v;
  }
}

// stage_b stages B column c (tile-local; global column j) for k0 + [0, nk).
fn stage_b(c: u32, j: u32, k0: u32, nk: u32) {
  let howo = p.ho * p.wo;
  let pix = j % howo;
  let base = p.x_off + (j / howo) * p.x_img;
  let ih0 = i32((pix / p.wo) * STRIDE) - i32(PAD);
  let iw0 = i32((pix % p.wo) * STRIDE) - i32(PAD);
  let ok = j < p.ncol;
  let hw = p.h * p.w;
  for (var q = 0u; q < (nk + 3u) / 4u; q++) {
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
      let k = k0 + 4u * q + i;
      let rem = k % KHW;
      let ih = ih0 + i32(rem / KW);
      let iw = iw0 + i32(rem % KW);
      if (ok && 4u * q + i < nk && ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
        v[i] = x[base + (k / KHW) * hw + u32(ih) * p.w + u32(iw)];
      }
    }
    tb[c * QS + q] = v;
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

//#include "conv2d_gemm_lib.wgsl"
