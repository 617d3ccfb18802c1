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

// Tiles [BM][BK] and [BN][BK], k-contiguous, as vec4: QS = BK/4 slots per
// row, TA_LEN = BM*QS, TB_LEN = BN*QS.
var<workgroup> ta: array<vec4<f32>, TA_LEN>;
var<workgroup> tb: array<vec4<f32>, TB_LEN>;

// rows_a returns 4 consecutive staged rows of A from slot i on (m[r] holds
// 4 k of row r); cols_b 4 columns of B, transposed (m[kk] holds the 4
// columns at one k).
fn rows_a(i: u32) -> mat4x4<f32> { return mat4x4<f32>(ta[i], ta[i + QS], ta[i + 2u * QS], ta[i + 3u * QS]); }
fn cols_b(i: u32) -> mat4x4<f32> { return transpose(mat4x4<f32>(tb[i], tb[i + QS], tb[i + 2u * QS], tb[i + 3u * QS])); }

// mma_row adds the products of 4 rows a (a[r][kk]) with the thread's TN4
// column groups (bt[kk][c], already transposed) into c0..c3:
// c[r][c] += sum_kk a[r][kk] * b[kk][c].
fn mma_row(a: mat4x4<f32>, bt0: mat4x4<f32>, bt1: mat4x4<f32>, bt2: mat4x4<f32>, bt3: mat4x4<f32>,
           c0: ptr<function, mat4x4<f32>>, c1: ptr<function, mat4x4<f32>>,
           c2: ptr<function, mat4x4<f32>>, c3: ptr<function, mat4x4<f32>>) {
  *c0 += bt0 * a;
  if (TN4 > 1u) { *c1 += bt1 * a; }
  if (TN4 > 2u) {
    *c2 += bt2 * a;
    *c3 += bt3 * a;
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
  let ai = lid.y * 4u * TM4 * QS; // slot of the thread's first row
  let bi = lid.x * 4u * TN4 * QS;
  let g4 = 4u * QS;               // slots per group of 4 rows
  for (var k0 = 0u; k0 < p.kdim; k0 += BK) {
    // A runtime trip count keeps the compiler from unrolling these loops
    // (compile time on CPU drivers) and skips the zero tail of K.
    let nk = min(BK, p.kdim - k0);
    stage(t, row0, col0, k0, nk);
    workgroupBarrier();
    for (var q = 0u; q < (nk + 3u) / 4u; q++) {
      let b0 = cols_b(bi + q);
      var b1 = b0;
      var b2 = b0;
      var b3 = b0;
      if (TN4 > 1u) { b1 = cols_b(bi + g4 + q); }
      if (TN4 > 2u) {
        b2 = cols_b(bi + 2u * g4 + q);
        b3 = cols_b(bi + 3u * g4 + q);
      }
      mma_row(rows_a(ai + q), b0, b1, b2, b3, &acc00, &acc01, &acc02, &acc03);
      if (TM4 > 1u) { mma_row(rows_a(ai + g4 + q), b0, b1, b2, b3, &acc10, &acc11, &acc12, &acc13); }
      if (TM4 > 2u) {
        mma_row(rows_a(ai + 2u * g4 + q), b0, b1, b2, b3, &acc20, &acc21, &acc22, &acc23);
        mma_row(rows_a(ai + 3u * g4 + q), b0, b1, b2, b3, &acc30, &acc31, &acc32, &acc33);
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
