// attention_bwd_dkdv_direct: key and value gradients of attention for CPU
// adapters (lavapipe), register-blocked like attention_fwd_direct.wgsl.
// Same results as attention_bwd_dkdv.wgsl: with P, dP, delta as in
// attention_bwd_dq_direct.wgsl (masked: i >= lq, or j > i when causal),
//   dv[j] = sum_i P dO[i],   dk[j] = scale * sum_i P (dP - delta[i]) q[i].
//
// Each invocation owns 32 consecutive key rows and walks the queries in
// blocks of 32 (from the block holding query j0 on when causal: earlier
// queries see none of its keys), keeping the transposed 32x32 blocks in
// 64 mat4x4 accumulators (constant indices only):
//   1. S^T = K Q^T and dP^T = V dO^T (per vec4 of the head dim: 32 k + 32 q
//      and 32 v + 32 dO loads for 2 x 4096 FMAs);
//   2. P^T = exp(scale * S^T - lse) and scale * dS^T, element by element,
//      zero where masked (lse and delta of the block's queries: 64 scalar
//      loads per block);
//   3. dv += P^T dO and dk += scale dS^T Q, kept in dk and dv themselves
//      (per vec4 of the head dim: 32 dO and 32 q loads, 64 loads and 64
//      stores of dk and dv for 8192 FMAs; the first block reads zeros).
// 320 vec4 accesses per 16384 FMAs. At least one query block always runs,
// so dk and dv are written (zeros for keys no query sees).
// Keys past lk are clamped and act as key lk - 1 (their invocation owns key
// lk - 1 and computes the same values; all of a d4 step's loads of a buffer
// come before its stores); queries past lq are clamped on load and masked.
// Bindings: 0 params {lq, lk, scale, causal, h0, dv, nh}; 1 q [BH, Lq, D];
//   2 k [BH, Lk, D]; 3 v [BH, Lk, D]; 4 g (dO) [BH, Lq, D];
//   5 lse [all BH, Lq]; 6 delta [all BH, Lq]; 7 dk [BH, Lk, D]
//   (read_write); 8 dv [BH, Lk, D] (read_write). All but lse and delta are
//   read as vec4 and bound from slice h0 on.
// Dispatch: Grid1D(nh * ceil(Lk / 32), WG), WG = 8.
struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32, dv: u32, nh: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dv: array<vec4<f32>>;

// ldq returns rows row..row+3 of this slice's q at vec4 d4 as the columns
// of a matrix (column r = q[row + r][4*d4 .. 4*d4 + 3]), rows clamped to
// the last; ldg, ldk, ldv likewise for dO, k, v.
fn ldq(off: u32, row: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lq - 1u;
  return mat4x4<f32>(q[off + min(row, last) * p.dv + d4], q[off + min(row + 1u, last) * p.dv + d4],
                     q[off + min(row + 2u, last) * p.dv + d4], q[off + min(row + 3u, last) * p.dv + d4]);
}
fn ldg(off: u32, row: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lq - 1u;
  return mat4x4<f32>(g[off + min(row, last) * p.dv + d4], g[off + min(row + 1u, last) * p.dv + d4],
                     g[off + min(row + 2u, last) * p.dv + d4], g[off + min(row + 3u, last) * p.dv + d4]);
}
fn ldk(off: u32, row: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lk - 1u;
  return mat4x4<f32>(k[off + min(row, last) * p.dv + d4], k[off + min(row + 1u, last) * p.dv + d4],
                     k[off + min(row + 2u, last) * p.dv + d4], k[off + min(row + 3u, last) * p.dv + d4]);
}
fn ldv(off: u32, row: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lk - 1u;
  return mat4x4<f32>(v[off + min(row, last) * p.dv + d4], v[off + min(row + 1u, last) * p.dv + d4],
                     v[off + min(row + 2u, last) * p.dv + d4], v[off + min(row + 3u, last) * p.dv + d4]);
}
// ld_dk is ldq for dk, or zeros when zero (the first block: dk holds
// garbage then; a select, not a branch); st_dk writes column r of b to
// row row + r, clamped like the loads.
fn ld_dk(off: u32, row: u32, d4: u32, zero: bool) -> mat4x4<f32> {
  let last = p.lk - 1u;
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select(dk[off + min(row, last) * p.dv + d4], z, zero), select(dk[off + min(row + 1u, last) * p.dv + d4], z, zero),
                     select(dk[off + min(row + 2u, last) * p.dv + d4], z, zero), select(dk[off + min(row + 3u, last) * p.dv + d4], z, zero));
}
fn st_dk(off: u32, row: u32, d4: u32, b: mat4x4<f32>) {
  let last = p.lk - 1u;
  dk[off + min(row, last) * p.dv + d4] = b[0];
  dk[off + min(row + 1u, last) * p.dv + d4] = b[1];
  dk[off + min(row + 2u, last) * p.dv + d4] = b[2];
  dk[off + min(row + 3u, last) * p.dv + d4] = b[3];
}
// ld_dv is ldq for dv, or zeros when zero (the first block: dv holds
// garbage then; a select, not a branch); st_dv writes column r of b to
// row row + r, clamped like the loads.
fn ld_dv(off: u32, row: u32, d4: u32, zero: bool) -> mat4x4<f32> {
  let last = p.lk - 1u;
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select(dv[off + min(row, last) * p.dv + d4], z, zero), select(dv[off + min(row + 1u, last) * p.dv + d4], z, zero),
                     select(dv[off + min(row + 2u, last) * p.dv + d4], z, zero), select(dv[off + min(row + 3u, last) * p.dv + d4], z, zero));
}
fn st_dv(off: u32, row: u32, d4: u32, b: mat4x4<f32>) {
  let last = p.lk - 1u;
  dv[off + min(row, last) * p.dv + d4] = b[0];
  dv[off + min(row + 1u, last) * p.dv + d4] = b[1];
  dv[off + min(row + 2u, last) * p.dv + d4] = b[2];
  dv[off + min(row + 3u, last) * p.dv + d4] = b[3];
}
// ldl and ldd return lse and delta of rows i..i+3 (clamped to the last).
fn ldl(base: u32, i: u32) -> vec4<f32> {
  let last = p.lq - 1u;
  return vec4<f32>(lse[base + min(i, last)], lse[base + min(i + 1u, last)], lse[base + min(i + 2u, last)], lse[base + min(i + 3u, last)]);
}
fn ldd(base: u32, i: u32) -> vec4<f32> {
  let last = p.lq - 1u;
  return vec4<f32>(delta[base + min(i, last)], delta[base + min(i + 1u, last)], delta[base + min(i + 2u, last)], delta[base + min(i + 3u, last)]);
}

struct Blk { c: array<mat4x4<f32>, 64> }

// S^T = K Q^T: c[NQ*kg + qg] column r = S[i0 + 4qg ..][j0 + 4kg + r]
fn scores(qoff: u32, koff: u32, j0: u32, i0: u32) -> Blk {
  var t: Blk;
  for (var d4 = 0u; d4 < p.dv; d4++) {
    let a0 = ldk(koff, j0 + 0u, d4);
    let a1 = ldk(koff, j0 + 4u, d4);
    let a2 = ldk(koff, j0 + 8u, d4);
    let a3 = ldk(koff, j0 + 12u, d4);
    let a4 = ldk(koff, j0 + 16u, d4);
    let a5 = ldk(koff, j0 + 20u, d4);
    let a6 = ldk(koff, j0 + 24u, d4);
    let a7 = ldk(koff, j0 + 28u, d4);
    let b0 = transpose(ldq(qoff, i0 + 0u, d4));
    let b1 = transpose(ldq(qoff, i0 + 4u, d4));
    let b2 = transpose(ldq(qoff, i0 + 8u, d4));
    let b3 = transpose(ldq(qoff, i0 + 12u, d4));
    let b4 = transpose(ldq(qoff, i0 + 16u, d4));
    let b5 = transpose(ldq(qoff, i0 + 20u, d4));
    let b6 = transpose(ldq(qoff, i0 + 24u, d4));
    let b7 = transpose(ldq(qoff, i0 + 28u, d4));
    t.c[0] += b0 * a0;
    t.c[1] += b1 * a0;
    t.c[2] += b2 * a0;
    t.c[3] += b3 * a0;
    t.c[4] += b4 * a0;
    t.c[5] += b5 * a0;
    t.c[6] += b6 * a0;
    t.c[7] += b7 * a0;
    t.c[8] += b0 * a1;
    t.c[9] += b1 * a1;
    t.c[10] += b2 * a1;
    t.c[11] += b3 * a1;
    t.c[12] += b4 * a1;
    t.c[13] += b5 * a1;
    t.c[14] += b6 * a1;
    t.c[15] += b7 * a1;
    t.c[16] += b0 * a2;
    t.c[17] += b1 * a2;
    t.c[18] += b2 * a2;
    t.c[19] += b3 * a2;
    t.c[20] += b4 * a2;
    t.c[21] += b5 * a2;
    t.c[22] += b6 * a2;
    t.c[23] += b7 * a2;
    t.c[24] += b0 * a3;
    t.c[25] += b1 * a3;
    t.c[26] += b2 * a3;
    t.c[27] += b3 * a3;
    t.c[28] += b4 * a3;
    t.c[29] += b5 * a3;
    t.c[30] += b6 * a3;
    t.c[31] += b7 * a3;
    t.c[32] += b0 * a4;
    t.c[33] += b1 * a4;
    t.c[34] += b2 * a4;
    t.c[35] += b3 * a4;
    t.c[36] += b4 * a4;
    t.c[37] += b5 * a4;
    t.c[38] += b6 * a4;
    t.c[39] += b7 * a4;
    t.c[40] += b0 * a5;
    t.c[41] += b1 * a5;
    t.c[42] += b2 * a5;
    t.c[43] += b3 * a5;
    t.c[44] += b4 * a5;
    t.c[45] += b5 * a5;
    t.c[46] += b6 * a5;
    t.c[47] += b7 * a5;
    t.c[48] += b0 * a6;
    t.c[49] += b1 * a6;
    t.c[50] += b2 * a6;
    t.c[51] += b3 * a6;
    t.c[52] += b4 * a6;
    t.c[53] += b5 * a6;
    t.c[54] += b6 * a6;
    t.c[55] += b7 * a6;
    t.c[56] += b0 * a7;
    t.c[57] += b1 * a7;
    t.c[58] += b2 * a7;
    t.c[59] += b3 * a7;
    t.c[60] += b4 * a7;
    t.c[61] += b5 * a7;
    t.c[62] += b6 * a7;
    t.c[63] += b7 * a7;
  }
  return t;
}
// dP^T = V dO^T, laid out as scores
fn dprobs(qoff: u32, koff: u32, j0: u32, i0: u32) -> Blk {
  var t: Blk;
  for (var d4 = 0u; d4 < p.dv; d4++) {
    let a0 = ldv(koff, j0 + 0u, d4);
    let a1 = ldv(koff, j0 + 4u, d4);
    let a2 = ldv(koff, j0 + 8u, d4);
    let a3 = ldv(koff, j0 + 12u, d4);
    let a4 = ldv(koff, j0 + 16u, d4);
    let a5 = ldv(koff, j0 + 20u, d4);
    let a6 = ldv(koff, j0 + 24u, d4);
    let a7 = ldv(koff, j0 + 28u, d4);
    let b0 = transpose(ldg(qoff, i0 + 0u, d4));
    let b1 = transpose(ldg(qoff, i0 + 4u, d4));
    let b2 = transpose(ldg(qoff, i0 + 8u, d4));
    let b3 = transpose(ldg(qoff, i0 + 12u, d4));
    let b4 = transpose(ldg(qoff, i0 + 16u, d4));
    let b5 = transpose(ldg(qoff, i0 + 20u, d4));
    let b6 = transpose(ldg(qoff, i0 + 24u, d4));
    let b7 = transpose(ldg(qoff, i0 + 28u, d4));
    t.c[0] += b0 * a0;
    t.c[1] += b1 * a0;
    t.c[2] += b2 * a0;
    t.c[3] += b3 * a0;
    t.c[4] += b4 * a0;
    t.c[5] += b5 * a0;
    t.c[6] += b6 * a0;
    t.c[7] += b7 * a0;
    t.c[8] += b0 * a1;
    t.c[9] += b1 * a1;
    t.c[10] += b2 * a1;
    t.c[11] += b3 * a1;
    t.c[12] += b4 * a1;
    t.c[13] += b5 * a1;
    t.c[14] += b6 * a1;
    t.c[15] += b7 * a1;
    t.c[16] += b0 * a2;
    t.c[17] += b1 * a2;
    t.c[18] += b2 * a2;
    t.c[19] += b3 * a2;
    t.c[20] += b4 * a2;
    t.c[21] += b5 * a2;
    t.c[22] += b6 * a2;
    t.c[23] += b7 * a2;
    t.c[24] += b0 * a3;
    t.c[25] += b1 * a3;
    t.c[26] += b2 * a3;
    t.c[27] += b3 * a3;
    t.c[28] += b4 * a3;
    t.c[29] += b5 * a3;
    t.c[30] += b6 * a3;
    t.c[31] += b7 * a3;
    t.c[32] += b0 * a4;
    t.c[33] += b1 * a4;
    t.c[34] += b2 * a4;
    t.c[35] += b3 * a4;
    t.c[36] += b4 * a4;
    t.c[37] += b5 * a4;
    t.c[38] += b6 * a4;
    t.c[39] += b7 * a4;
    t.c[40] += b0 * a5;
    t.c[41] += b1 * a5;
    t.c[42] += b2 * a5;
    t.c[43] += b3 * a5;
    t.c[44] += b4 * a5;
    t.c[45] += b5 * a5;
    t.c[46] += b6 * a5;
    t.c[47] += b7 * a5;
    t.c[48] += b0 * a6;
    t.c[49] += b1 * a6;
    t.c[50] += b2 * a6;
    t.c[51] += b3 * a6;
    t.c[52] += b4 * a6;
    t.c[53] += b5 * a6;
    t.c[54] += b6 * a6;
    t.c[55] += b7 * a6;
    t.c[56] += b0 * a7;
    t.c[57] += b1 * a7;
    t.c[58] += b2 * a7;
    t.c[59] += b3 * a7;
    t.c[60] += b4 * a7;
    t.c[61] += b5 * a7;
    t.c[62] += b6 * a7;
    t.c[63] += b7 * a7;
  }
  return t;
}

// Probs is P^T and scale * dS^T for four keys (column r: key j + r) and four
// queries (components: i..i+3), zero where masked.
struct Probs { p: mat4x4<f32>, ds: mat4x4<f32> }

fn probs(s: mat4x4<f32>, dp: mat4x4<f32>, j: u32, i: u32, l: vec4<f32>, d: vec4<f32>) -> Probs {
  let qs = vec4<u32>(i) + vec4<u32>(0u, 1u, 2u, 3u);
  let inr = qs < vec4<u32>(p.lq);
  let c = p.causal != 0u;
  let last = p.lk - 1u; // keys past lk act as key lk - 1 (see st_dk)
  let m0 = inr & (vec4<bool>(!c) | vec4<u32>(min(j, last)) <= qs);
  let m1 = inr & (vec4<bool>(!c) | vec4<u32>(min(j + 1u, last)) <= qs);
  let m2 = inr & (vec4<bool>(!c) | vec4<u32>(min(j + 2u, last)) <= qs);
  let m3 = inr & (vec4<bool>(!c) | vec4<u32>(min(j + 3u, last)) <= qs);
  let z = vec4<f32>(0.0);
  var r: Probs;
  r.p = mat4x4<f32>(select(z, exp(s[0] * p.scale - l), m0), select(z, exp(s[1] * p.scale - l), m1),
                    select(z, exp(s[2] * p.scale - l), m2), select(z, exp(s[3] * p.scale - l), m3));
  let f = p.scale;
  r.ds = mat4x4<f32>(r.p[0] * (dp[0] - d) * f, r.p[1] * (dp[1] - d) * f, r.p[2] * (dp[2] - d) * f, r.p[3] * (dp[3] - d) * f);
  return r;
}

const WG: u32 = 8u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  let nb = (p.lk + 31u) / 32u;
  let bh = t / nb;
  if (bh >= p.nh) { return; }
  let j0 = (t % nb) * 32u;
  let qoff = bh * p.lq * p.dv;
  let koff = bh * p.lk * p.dv;
  let lb = (p.h0 + bh) * p.lq;
  // Causal: queries before j0 see none of these keys. At least one block
  // runs (it zeroes dk and dv; when j0 >= lq it is wholly masked).
  var istart = 0u;
  if (p.causal != 0u) { istart = min(j0, p.lq - 1u) / 32u * 32u; }
  for (var i0 = istart; i0 < p.lq; i0 += 32u) {
    let l0 = ldl(lb, i0 + 0u);
    let e0 = ldd(lb, i0 + 0u);
    let l1 = ldl(lb, i0 + 4u);
    let e1 = ldd(lb, i0 + 4u);
    let l2 = ldl(lb, i0 + 8u);
    let e2 = ldd(lb, i0 + 8u);
    let l3 = ldl(lb, i0 + 12u);
    let e3 = ldd(lb, i0 + 12u);
    let l4 = ldl(lb, i0 + 16u);
    let e4 = ldd(lb, i0 + 16u);
    let l5 = ldl(lb, i0 + 20u);
    let e5 = ldd(lb, i0 + 20u);
    let l6 = ldl(lb, i0 + 24u);
    let e6 = ldd(lb, i0 + 24u);
    let l7 = ldl(lb, i0 + 28u);
    let e7 = ldd(lb, i0 + 28u);
    let s = scores(qoff, koff, j0, i0);
    let dp = dprobs(qoff, koff, j0, i0);
    let p0_0 = probs(s.c[0], dp.c[0], j0 + 0u, i0 + 0u, l0, e0);
    let p0_1 = probs(s.c[1], dp.c[1], j0 + 0u, i0 + 4u, l1, e1);
    let p0_2 = probs(s.c[2], dp.c[2], j0 + 0u, i0 + 8u, l2, e2);
    let p0_3 = probs(s.c[3], dp.c[3], j0 + 0u, i0 + 12u, l3, e3);
    let p0_4 = probs(s.c[4], dp.c[4], j0 + 0u, i0 + 16u, l4, e4);
    let p0_5 = probs(s.c[5], dp.c[5], j0 + 0u, i0 + 20u, l5, e5);
    let p0_6 = probs(s.c[6], dp.c[6], j0 + 0u, i0 + 24u, l6, e6);
    let p0_7 = probs(s.c[7], dp.c[7], j0 + 0u, i0 + 28u, l7, e7);
    let p1_0 = probs(s.c[8], dp.c[8], j0 + 4u, i0 + 0u, l0, e0);
    let p1_1 = probs(s.c[9], dp.c[9], j0 + 4u, i0 + 4u, l1, e1);
    let p1_2 = probs(s.c[10], dp.c[10], j0 + 4u, i0 + 8u, l2, e2);
    let p1_3 = probs(s.c[11], dp.c[11], j0 + 4u, i0 + 12u, l3, e3);
    let p1_4 = probs(s.c[12], dp.c[12], j0 + 4u, i0 + 16u, l4, e4);
    let p1_5 = probs(s.c[13], dp.c[13], j0 + 4u, i0 + 20u, l5, e5);
    let p1_6 = probs(s.c[14], dp.c[14], j0 + 4u, i0 + 24u, l6, e6);
    let p1_7 = probs(s.c[15], dp.c[15], j0 + 4u, i0 + 28u, l7, e7);
    let p2_0 = probs(s.c[16], dp.c[16], j0 + 8u, i0 + 0u, l0, e0);
    let p2_1 = probs(s.c[17], dp.c[17], j0 + 8u, i0 + 4u, l1, e1);
    let p2_2 = probs(s.c[18], dp.c[18], j0 + 8u, i0 + 8u, l2, e2);
    let p2_3 = probs(s.c[19], dp.c[19], j0 + 8u, i0 + 12u, l3, e3);
    let p2_4 = probs(s.c[20], dp.c[20], j0 + 8u, i0 + 16u, l4, e4);
    let p2_5 = probs(s.c[21], dp.c[21], j0 + 8u, i0 + 20u, l5, e5);
    let p2_6 = probs(s.c[22], dp.c[22], j0 + 8u, i0 + 24u, l6, e6);
    let p2_7 = probs(s.c[23], dp.c[23], j0 + 8u, i0 + 28u, l7, e7);
    let p3_0 = probs(s.c[24], dp.c[24], j0 + 12u, i0 + 0u, l0, e0);
    let p3_1 = probs(s.c[25], dp.c[25], j0 + 12u, i0 + 4u, l1, e1);
    let p3_2 = probs(s.c[26], dp.c[26], j0 + 12u, i0 + 8u, l2, e2);
    let p3_3 = probs(s.c[27], dp.c[27], j0 + 12u, i0 + 12u, l3, e3);
    let p3_4 = probs(s.c[28], dp.c[28], j0 + 12u, i0 + 16u, l4, e4);
    let p3_5 = probs(s.c[29], dp.c[29], j0 + 12u, i0 + 20u, l5, e5);
    let p3_6 = probs(s.c[30], dp.c[30], j0 + 12u, i0 + 24u, l6, e6);
    let p3_7 = probs(s.c[31], dp.c[31], j0 + 12u, i0 + 28u, l7, e7);
    let p4_0 = probs(s.c[32], dp.c[32], j0 + 16u, i0 + 0u, l0, e0);
    let p4_1 = probs(s.c[33], dp.c[33], j0 + 16u, i0 + 4u, l1, e1);
    let p4_2 = probs(s.c[34], dp.c[34], j0 + 16u, i0 + 8u, l2, e2);
    let p4_3 = probs(s.c[35], dp.c[35], j0 + 16u, i0 + 12u, l3, e3);
    let p4_4 = probs(s.c[36], dp.c[36], j0 + 16u, i0 + 16u, l4, e4);
    let p4_5 = probs(s.c[37], dp.c[37], j0 + 16u, i0 + 20u, l5, e5);
    let p4_6 = probs(s.c[38], dp.c[38], j0 + 16u, i0 + 24u, l6, e6);
    let p4_7 = probs(s.c[39], dp.c[39], j0 + 16u, i0 + 28u, l7, e7);
    let p5_0 = probs(s.c[40], dp.c[40], j0 + 20u, i0 + 0u, l0, e0);
    let p5_1 = probs(s.c[41], dp.c[41], j0 + 20u, i0 + 4u, l1, e1);
    let p5_2 = probs(s.c[42], dp.c[42], j0 + 20u, i0 + 8u, l2, e2);
    let p5_3 = probs(s.c[43], dp.c[43], j0 + 20u, i0 + 12u, l3, e3);
    let p5_4 = probs(s.c[44], dp.c[44], j0 + 20u, i0 + 16u, l4, e4);
    let p5_5 = probs(s.c[45], dp.c[45], j0 + 20u, i0 + 20u, l5, e5);
    let p5_6 = probs(s.c[46], dp.c[46], j0 + 20u, i0 + 24u, l6, e6);
    let p5_7 = probs(s.c[47], dp.c[47], j0 + 20u, i0 + 28u, l7, e7);
    let p6_0 = probs(s.c[48], dp.c[48], j0 + 24u, i0 + 0u, l0, e0);
    let p6_1 = probs(s.c[49], dp.c[49], j0 + 24u, i0 + 4u, l1, e1);
    let p6_2 = probs(s.c[50], dp.c[50], j0 + 24u, i0 + 8u, l2, e2);
    let p6_3 = probs(s.c[51], dp.c[51], j0 + 24u, i0 + 12u, l3, e3);
    let p6_4 = probs(s.c[52], dp.c[52], j0 + 24u, i0 + 16u, l4, e4);
    let p6_5 = probs(s.c[53], dp.c[53], j0 + 24u, i0 + 20u, l5, e5);
    let p6_6 = probs(s.c[54], dp.c[54], j0 + 24u, i0 + 24u, l6, e6);
    let p6_7 = probs(s.c[55], dp.c[55], j0 + 24u, i0 + 28u, l7, e7);
    let p7_0 = probs(s.c[56], dp.c[56], j0 + 28u, i0 + 0u, l0, e0);
    let p7_1 = probs(s.c[57], dp.c[57], j0 + 28u, i0 + 4u, l1, e1);
    let p7_2 = probs(s.c[58], dp.c[58], j0 + 28u, i0 + 8u, l2, e2);
    let p7_3 = probs(s.c[59], dp.c[59], j0 + 28u, i0 + 12u, l3, e3);
    let p7_4 = probs(s.c[60], dp.c[60], j0 + 28u, i0 + 16u, l4, e4);
    let p7_5 = probs(s.c[61], dp.c[61], j0 + 28u, i0 + 20u, l5, e5);
    let p7_6 = probs(s.c[62], dp.c[62], j0 + 28u, i0 + 24u, l6, e6);
    let p7_7 = probs(s.c[63], dp.c[63], j0 + 28u, i0 + 28u, l7, e7);
    let first = i0 == istart;
    for (var d4 = 0u; d4 < p.dv; d4++) {
      let gb0 = ldg(qoff, i0 + 0u, d4);
      let gb1 = ldg(qoff, i0 + 4u, d4);
      let gb2 = ldg(qoff, i0 + 8u, d4);
      let gb3 = ldg(qoff, i0 + 12u, d4);
      let gb4 = ldg(qoff, i0 + 16u, d4);
      let gb5 = ldg(qoff, i0 + 20u, d4);
      let gb6 = ldg(qoff, i0 + 24u, d4);
      let gb7 = ldg(qoff, i0 + 28u, d4);
      let ov0 = gb0 * p0_0.p + gb1 * p0_1.p + gb2 * p0_2.p + gb3 * p0_3.p + gb4 * p0_4.p + gb5 * p0_5.p + gb6 * p0_6.p + gb7 * p0_7.p + ld_dv(koff, j0 + 0u, d4, first);
      let ov1 = gb0 * p1_0.p + gb1 * p1_1.p + gb2 * p1_2.p + gb3 * p1_3.p + gb4 * p1_4.p + gb5 * p1_5.p + gb6 * p1_6.p + gb7 * p1_7.p + ld_dv(koff, j0 + 4u, d4, first);
      let ov2 = gb0 * p2_0.p + gb1 * p2_1.p + gb2 * p2_2.p + gb3 * p2_3.p + gb4 * p2_4.p + gb5 * p2_5.p + gb6 * p2_6.p + gb7 * p2_7.p + ld_dv(koff, j0 + 8u, d4, first);
      let ov3 = gb0 * p3_0.p + gb1 * p3_1.p + gb2 * p3_2.p + gb3 * p3_3.p + gb4 * p3_4.p + gb5 * p3_5.p + gb6 * p3_6.p + gb7 * p3_7.p + ld_dv(koff, j0 + 12u, d4, first);
      let ov4 = gb0 * p4_0.p + gb1 * p4_1.p + gb2 * p4_2.p + gb3 * p4_3.p + gb4 * p4_4.p + gb5 * p4_5.p + gb6 * p4_6.p + gb7 * p4_7.p + ld_dv(koff, j0 + 16u, d4, first);
      let ov5 = gb0 * p5_0.p + gb1 * p5_1.p + gb2 * p5_2.p + gb3 * p5_3.p + gb4 * p5_4.p + gb5 * p5_5.p + gb6 * p5_6.p + gb7 * p5_7.p + ld_dv(koff, j0 + 20u, d4, first);
      let ov6 = gb0 * p6_0.p + gb1 * p6_1.p + gb2 * p6_2.p + gb3 * p6_3.p + gb4 * p6_4.p + gb5 * p6_5.p + gb6 * p6_6.p + gb7 * p6_7.p + ld_dv(koff, j0 + 24u, d4, first);
      let ov7 = gb0 * p7_0.p + gb1 * p7_1.p + gb2 * p7_2.p + gb3 * p7_3.p + gb4 * p7_4.p + gb5 * p7_5.p + gb6 * p7_6.p + gb7 * p7_7.p + ld_dv(koff, j0 + 28u, d4, first);
      st_dv(koff, j0 + 0u, d4, ov0);
      st_dv(koff, j0 + 4u, d4, ov1);
      st_dv(koff, j0 + 8u, d4, ov2);
      st_dv(koff, j0 + 12u, d4, ov3);
      st_dv(koff, j0 + 16u, d4, ov4);
      st_dv(koff, j0 + 20u, d4, ov5);
      st_dv(koff, j0 + 24u, d4, ov6);
      st_dv(koff, j0 + 28u, d4, ov7);
      let qb0 = ldq(qoff, i0 + 0u, d4);
      let qb1 = ldq(qoff, i0 + 4u, d4);
      let qb2 = ldq(qoff, i0 + 8u, d4);
      let qb3 = ldq(qoff, i0 + 12u, d4);
      let qb4 = ldq(qoff, i0 + 16u, d4);
      let qb5 = ldq(qoff, i0 + 20u, d4);
      let qb6 = ldq(qoff, i0 + 24u, d4);
      let qb7 = ldq(qoff, i0 + 28u, d4);
      let ok0 = qb0 * p0_0.ds + qb1 * p0_1.ds + qb2 * p0_2.ds + qb3 * p0_3.ds + qb4 * p0_4.ds + qb5 * p0_5.ds + qb6 * p0_6.ds + qb7 * p0_7.ds + ld_dk(koff, j0 + 0u, d4, first);
      let ok1 = qb0 * p1_0.ds + qb1 * p1_1.ds + qb2 * p1_2.ds + qb3 * p1_3.ds + qb4 * p1_4.ds + qb5 * p1_5.ds + qb6 * p1_6.ds + qb7 * p1_7.ds + ld_dk(koff, j0 + 4u, d4, first);
      let ok2 = qb0 * p2_0.ds + qb1 * p2_1.ds + qb2 * p2_2.ds + qb3 * p2_3.ds + qb4 * p2_4.ds + qb5 * p2_5.ds + qb6 * p2_6.ds + qb7 * p2_7.ds + ld_dk(koff, j0 + 8u, d4, first);
      let ok3 = qb0 * p3_0.ds + qb1 * p3_1.ds + qb2 * p3_2.ds + qb3 * p3_3.ds + qb4 * p3_4.ds + qb5 * p3_5.ds + qb6 * p3_6.ds + qb7 * p3_7.ds + ld_dk(koff, j0 + 12u, d4, first);
      let ok4 = qb0 * p4_0.ds + qb1 * p4_1.ds + qb2 * p4_2.ds + qb3 * p4_3.ds + qb4 * p4_4.ds + qb5 * p4_5.ds + qb6 * p4_6.ds + qb7 * p4_7.ds + ld_dk(koff, j0 + 16u, d4, first);
      let ok5 = qb0 * p5_0.ds + qb1 * p5_1.ds + qb2 * p5_2.ds + qb3 * p5_3.ds + qb4 * p5_4.ds + qb5 * p5_5.ds + qb6 * p5_6.ds + qb7 * p5_7.ds + ld_dk(koff, j0 + 20u, d4, first);
      let ok6 = qb0 * p6_0.ds + qb1 * p6_1.ds + qb2 * p6_2.ds + qb3 * p6_3.ds + qb4 * p6_4.ds + qb5 * p6_5.ds + qb6 * p6_6.ds + qb7 * p6_7.ds + ld_dk(koff, j0 + 24u, d4, first);
      let ok7 = qb0 * p7_0.ds + qb1 * p7_1.ds + qb2 * p7_2.ds + qb3 * p7_3.ds + qb4 * p7_4.ds + qb5 * p7_5.ds + qb6 * p7_6.ds + qb7 * p7_7.ds + ld_dk(koff, j0 + 28u, d4, first);
      st_dk(koff, j0 + 0u, d4, ok0);
      st_dk(koff, j0 + 4u, d4, ok1);
      st_dk(koff, j0 + 8u, d4, ok2);
      st_dk(koff, j0 + 12u, d4, ok3);
      st_dk(koff, j0 + 16u, d4, ok4);
      st_dk(koff, j0 + 20u, d4, ok5);
      st_dk(koff, j0 + 24u, d4, ok6);
      st_dk(koff, j0 + 28u, d4, ok7);
    }
  }
}
