// conv2d_bwd_input: dx = dL/dx of out = conv2d(x, w), a transposed
// convolution of g = dL/dout, as an implicit GEMM (no buffer is built):
//   C[M, NC] = A[M, K] * B[K, NC],  M = Cin, NC = N*H*W, K = Cout*KH*KW,
//   A[ci, k] = w[co, ci, kh, kw],
//   B[k, j]  = g[n, co, oh, ow] where ih = oh*STRIDE - PAD + kh and
//              iw = ow*STRIDE - PAD + kw (0 when no such oh/ow exists),
//   k = (co, kh, kw), j = (n, ih, iw).
// Each dx element is thus the sum over every output it contributed to. With
// STRIDE 2, three in four B entries are structural zeros (not skipped).
//
// Go prepends (Kernel.Consts; this naga has no constant expressions):
//   KH, KW, KHW = KH*KW, STRIDE, PAD      the convolution;
//   TM4, TN4 in {1, 2, 4}                 each thread owns a (4*TM4) x (4*TN4) block;
//   BM = 32*TM4, BN = 32*TN4              the workgroup's tile;
//   BK, QS = BK/4, TA_LEN = BM*QS, TB_LEN = BN*QS   the K step and tile storage;
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
// images [0, nb) of the g and dx windows, input channels ci0 + [0, m),
// output channels co0 + [0, kdim/KHW), columns j0 + [0, BN*groups.x).
// Addresses (ci, co local to the block, n local to the windows):
//   g:  g_off + n*g_img + co*Ho*Wo + oh*Wo + ow
//   dx: x_off + n*x_img + ci*H*W + ih*W + iw
//   w:  (co0 + co)*wrow + (ci0 + ci)*KHW + kh*KW + kw   (wrow = Cin*KHW)
// flags: bit 1 accumulates into dx (later output-channel blocks).
//
// Bindings: 0 params; 1 g; 2 w; 3 dx (read_write).
// Dispatch: (ceil(columns / BN), ceil(m / BM), 1), columns <= 65535*BN per dispatch.
struct P {
  m: u32, ncol: u32, kdim: u32, wrow: u32,
  ci0: u32, co0: u32, j0: u32, flags: u32,
  h: u32, w: u32, ho: u32, wo: u32,
  g_off: u32, g_img: u32, x_off: u32, x_img: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;


// stage_a stages A row r (tile-local input channel) for k0 + [0, nk).
fn stage_a(r: u32, row0: u32, k0: u32, nk: u32) {
  let ok = row0 + r < p.m;
  let base = (p.ci0 + row0 + r) * KHW;
  for (var q = 0u; q < (nk + 3u) / 4u; q++) {
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
      let k = k0 + 4u * q + i;
      if (ok && 4u * q + i < nk) { v[i] = wt[(p.co0 + k / KHW) * p.wrow + base + k % KHW]; }
    }
    ta[r * QS + q] = v;
  }
}

// stage_b stages B column c (tile-local; global column j) for k0 + [0, nk).
fn stage_b(c: u32, j: u32, k0: u32, nk: u32) {
  let hw = p.h * p.w;
  let pix = j % hw;
  let base = p.g_off + (j / hw) * p.g_img;
  let th0 = i32(pix / p.w + PAD);
  let tw0 = i32(pix % p.w + PAD);
  let ok = j < p.ncol;
  let howo = p.ho * p.wo;
  for (var q = 0u; q < (nk + 3u) / 4u; q++) {
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
      let k = k0 + 4u * q + i;
      let rem = k % KHW;
      // oh*STRIDE = ih + PAD - kh must be a non-negative multiple of STRIDE.
      let th = th0 - i32(rem / KW);
      let tw = tw0 - i32(rem % KW);
      if (ok && 4u * q + i < nk && th >= 0 && tw >= 0) {
        let oh = u32(th) / STRIDE;
        let ow = u32(tw) / STRIDE;
        if (u32(th) % STRIDE == 0u && u32(tw) % STRIDE == 0u && oh < p.ho && ow < p.wo) {
          v[i] = g[base + (k / KHW) * howo + oh * p.wo + ow];
        }
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

// col_base is the dx address of GEMM column j (row 0).
fn col_base(j: u32) -> u32 {
  let hw = p.h * p.w;
  return p.x_off + (j / hw) * p.x_img + j % hw;
}

// store writes input channel ci (block-local) at column address base.
fn store(ci: u32, base: u32, v: f32) {
  let o = base + ci * p.h * p.w;
  var r = v;
  if ((p.flags & 2u) != 0u) { r += dx[o]; }
  dx[o] = r;
}

//#include "conv2d_gemm_lib.wgsl"
