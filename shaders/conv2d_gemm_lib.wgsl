// conv2d_gemm_lib: the implicit-GEMM tile core and entry point shared by
// conv2d_fwd, conv2d_bwd_input and conv2d_bwd_weight (included at their end).
// The including shader defines the params block p, the tile constants (BM,
// BN, BK, QS, TA_LEN, TB_LEN, TN4 from Go's Kernel.Consts) and the functions
// that differ per direction: how A and B tiles are staged from memory
// (im2col index math for x, weights, gradients), col_base and store. No
// entry point of its own is compiled from this file alone.

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
