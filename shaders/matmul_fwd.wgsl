// matmul_fwd: batched GEMM  C[z] (+)= sum_r op(A[z, r]) @ op(B[z, r]) (+ bias),
// op(X) = X or X^T per the trans_a / trans_b parameters.
//
// Used in both directions: MatMul and Linear run their forward pass through
// it, and their backward passes are GEMMs of the same kind with other
// transpose flags (op_matmul.go: dA = G @ op(B)^T, dB = op(A)^T @ G, the
// latter summed over the batch by the reduction loop r < nred when B was
// shared). Only the bias gradient of Linear has its own kernel
// (matmul_bwd.wgsl).
//
// Constant (Kernel.Consts): ACCUM: bool, add into C instead of overwriting.
// The transposes are uniforms rather than constants: every load is then
// followed by a select between the block and its transpose, which costs
// little, while each pipeline costs 1-2 s of JIT on lavapipe.
//
// Shapes (logical): op(A) [M, K], op(B) [K, N], C [M, N] per item z.
// Storage, all read as vec4: A is [M, Kp] (or [K, Mp] when trans_a), B is
// [K, Np] (or [N, Kp] when trans_b), row-major with rows padded to a
// multiple of 4 floats (the Go side pads operands whose rows are not;
// padding along K must be zeros, padding along M or N is never used); lda
// and ldb are the row lengths in vec4s. C is [M, ldc vec4s] per item (the
// Go side computes into a padded temporary when N is not a multiple of 4)
// and so is the bias.
// Item z, reduction step r reads A from vec4 a0 + z*sa + r*ra and B from
// b0 + z*sb + r*rb (a stride of 0 shares the operand); item z of C starts
// at vec4 c0 + z*sc.
//
// Tiling, tuned for llvmpipe (see op_matmul.go for the measurements): each
// invocation computes a 16x16 block of C in sixteen mat4x4 accumulators,
// reading A and B straight from the storage buffers (no workgroup memory:
// on llvmpipe every non-constant load is a per-lane loop, so what counts is
// loads per FMA, here 32 vec4 loads per 1024 FMAs). The 8 invocations along
// x share their A rows. Rows and columns past M and N are clamped on load
// and skipped on store; k past K reads zeros.
//
// Bindings: 0 params; 1 A; 2 B; 3 C (read_write); 4 bias [N] (entry
// main_bias only: C = A@B + bias[n]).
// Dispatch: (ceil(N / 128), ceil(M / 128), items), workgroup 8x8.
struct P {
  M: u32, N: u32, K: u32, nred: u32,
  lda: u32, ldb: u32, a0: u32, b0: u32,
  sa: u32, sb: u32, ra: u32, rb: u32,
  c0: u32, sc: u32, trans_a: u32, trans_b: u32,
  ldc: u32, _p0: u32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> C: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<vec4<f32>>;

// tr returns m, or its transpose when t (a select per column: the flags are
// uniforms, so one pipeline serves every transpose combination).
fn tr(m: mat4x4<f32>, t: bool) -> mat4x4<f32> {
  let u = transpose(m);
  return mat4x4<f32>(select(m[0], u[0], t), select(m[1], u[1], t), select(m[2], u[2], t), select(m[3], u[3], t));
}

// ld_a returns vec4 c of stored row r of A, or zeros when r >= rows (rows
// past M are never stored, rows past K must read as zeros).
fn ld_a(base: u32, r: u32, rows: u32, c: u32) -> vec4<f32> {
  let v = A[base + min(r, rows - 1u) * p.lda + c];
  return select(vec4<f32>(0.0), v, r < rows);
}
fn ld_b(base: u32, r: u32, rows: u32, c: u32) -> vec4<f32> {
  let v = B[base + min(r, rows - 1u) * p.ldb + c];
  return select(vec4<f32>(0.0), v, r < rows);
}

// load_a returns the 4x4 block of op(A) at rows m..m+3, k = 4*k4..4*k4+3 as
// a matrix whose column r holds op(A)[m + r][k..k+3]. Stored A [M, Kp]: the
// four loads are rows m..m+3 at vec4 k4. Stored A^T [K, Mp]: rows k..k+3
// at vec4 m/4, transposed.
fn load_a(base: u32, m: u32, k4: u32) -> mat4x4<f32> {
  let t = p.trans_a != 0u;
  let r = select(m, k4 * 4u, t);
  let rows = select(p.M, p.K, t);
  let c = select(k4, min(m, p.M - 1u) / 4u, t);
  return tr(mat4x4<f32>(ld_a(base, r, rows, c), ld_a(base, r + 1u, rows, c), ld_a(base, r + 2u, rows, c), ld_a(base, r + 3u, rows, c)), t);
}

// load_b returns the 4x4 block of op(B) at k = 4*k4..4*k4+3, columns
// n..n+3 as a matrix whose column j holds op(B)[k + j][n..n+3]. Stored B
// [K, Np]: rows k..k+3 at vec4 n/4. Stored B^T [N, Kp]: rows n..n+3 at vec4
// k4, transposed.
fn load_b(base: u32, n: u32, k4: u32) -> mat4x4<f32> {
  let t = p.trans_b != 0u;
  let r = select(k4 * 4u, n, t);
  let rows = select(p.K, p.N, t);
  let c = select(min(n, p.N - 1u) / 4u, k4, t);
  return tr(mat4x4<f32>(ld_b(base, r, rows, c), ld_b(base, r + 1u, rows, c), ld_b(base, r + 2u, rows, c), ld_b(base, r + 3u, rows, c)), t);
}

// Accumulators: c[4*i + j] is the block at rows m0 + 4i, columns n0 + 4j;
// its column r holds C[m0 + 4i + r][n0 + 4j .. n0 + 4j + 3]. Constant
// indices only, so the compiler keeps them in registers.
struct Acc { c: array<mat4x4<f32>, 16> }

fn tile(z: u32, m0: u32, n0: u32) -> Acc {
  var t: Acc;
  let k4n = (p.K + 3u) / 4u;
  // One flat loop over (r, k4): a nested reduction loop costs ~10% on
  // llvmpipe (every load inside pays for the combined loop masks).
  var abase = p.a0 + z * p.sa;
  var bbase = p.b0 + z * p.sb;
  var k4 = 0u;
  for (var it = p.nred * k4n; it > 0u; it--) {
    let a0 = load_a(abase, m0, k4);
    let a1 = load_a(abase, m0 + 4u, k4);
    let a2 = load_a(abase, m0 + 8u, k4);
    let a3 = load_a(abase, m0 + 12u, k4);
    let b0 = load_b(bbase, n0, k4);
    let b1 = load_b(bbase, n0 + 4u, k4);
    let b2 = load_b(bbase, n0 + 8u, k4);
    let b3 = load_b(bbase, n0 + 12u, k4);
    t.c[0] += b0 * a0;
    t.c[1] += b1 * a0;
    t.c[2] += b2 * a0;
    t.c[3] += b3 * a0;
    t.c[4] += b0 * a1;
    t.c[5] += b1 * a1;
    t.c[6] += b2 * a1;
    t.c[7] += b3 * a1;
    t.c[8] += b0 * a2;
    t.c[9] += b1 * a2;
    t.c[10] += b2 * a2;
    t.c[11] += b3 * a2;
    t.c[12] += b0 * a3;
    t.c[13] += b1 * a3;
    t.c[14] += b2 * a3;
    t.c[15] += b3 * a3;
    k4++;
    let wrap = k4 == k4n;
    k4 = select(k4, 0u, wrap);
    abase = select(abase, abase + p.ra, wrap);
    bbase = select(bbase, bbase + p.rb, wrap);
  }
  return t;
}

// put_row writes C[m][n..n+3] = v (+ the old value when ACCUM); the row
// is skipped past M, the vec4 past N (columns past N within it are padding).
fn put_row(z: u32, m: u32, n: u32, v: vec4<f32>) {
  if (m < p.M && n < p.N) {
    let i = p.c0 + z * p.sc + m * p.ldc + n / 4u;
    if (ACCUM) {
      C[i] = C[i] + v;
    } else {
      C[i] = v;
    }
  }
}

// put_block writes the 4x4 block at rows m.., columns n.., adding bv
// (bias[n..n+3]) to every row.
fn put_block(z: u32, m: u32, n: u32, b: mat4x4<f32>, bv: vec4<f32>) {
  put_row(z, m, n, b[0] + bv);
  put_row(z, m + 1u, n, b[1] + bv);
  put_row(z, m + 2u, n, b[2] + bv);
  put_row(z, m + 3u, n, b[3] + bv);
}

fn put_tile(z: u32, m0: u32, n0: u32, t: Acc, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) {
  put_block(z, m0, n0, t.c[0], b0);
  put_block(z, m0, n0 + 4u, t.c[1], b1);
  put_block(z, m0, n0 + 8u, t.c[2], b2);
  put_block(z, m0, n0 + 12u, t.c[3], b3);
  put_block(z, m0 + 4u, n0, t.c[4], b0);
  put_block(z, m0 + 4u, n0 + 4u, t.c[5], b1);
  put_block(z, m0 + 4u, n0 + 8u, t.c[6], b2);
  put_block(z, m0 + 4u, n0 + 12u, t.c[7], b3);
  put_block(z, m0 + 8u, n0, t.c[8], b0);
  put_block(z, m0 + 8u, n0 + 4u, t.c[9], b1);
  put_block(z, m0 + 8u, n0 + 8u, t.c[10], b2);
  put_block(z, m0 + 8u, n0 + 12u, t.c[11], b3);
  put_block(z, m0 + 12u, n0, t.c[12], b0);
  put_block(z, m0 + 12u, n0 + 4u, t.c[13], b1);
  put_block(z, m0 + 12u, n0 + 8u, t.c[14], b2);
  put_block(z, m0 + 12u, n0 + 12u, t.c[15], b3);
}

fn bias4(n: u32) -> vec4<f32> {
  return bias[min(n, p.N - 1u) / 4u];
}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * 16u;
  let n0 = gid.x * 16u;
  if (m0 >= p.M || n0 >= p.N) { return; }
  let zero = vec4<f32>(0.0);
  put_tile(gid.z, m0, n0, tile(gid.z, m0, n0), zero, zero, zero, zero);
}

@compute @workgroup_size(8, 8)
fn main_bias(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * 16u;
  let n0 = gid.x * 16u;
  if (m0 >= p.M || n0 >= p.N) { return; }
  put_tile(gid.z, m0, n0, tile(gid.z, m0, n0), bias4(n0), bias4(n0 + 4u), bias4(n0 + 8u), bias4(n0 + 12u));
}
