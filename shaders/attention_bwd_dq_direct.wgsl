// attention_bwd_dq_direct: query gradient of attention for CPU adapters
// (lavapipe), register-blocked like attention_fwd_direct.wgsl. Same results
// as attention_bwd_dq.wgsl: per (batch, head) slice, with
// S = q[i].k[j] (masked: j >= lk, or j > i when causal),
// P = exp(scale * S - lse[i]) (lse saved by the forward),
// dP = dO[i].v[j] and delta[i] = dO[i].O[i] (attention_bwd_delta.wgsl):
//   dq[i] = scale * sum_j P (dP - delta[i]) k[j].
//
// On llvmpipe every load or store whose address is not a compile-time
// constant is a loop over the SIMD lanes while arithmetic is cheap, so what
// counts is FMAs per vec4 memory access. Each invocation owns 32
// consecutive query rows and walks the keys in blocks of 32, keeping a
// 32x32 block in 64 mat4x4 accumulators (constant indices only):
//   1. S = Q K^T and dP = dO V^T for the block (per vec4 of the head dim:
//      32 q + 32 k and 32 dO + 32 v loads for 2 x 4096 FMAs);
//   2. scale * dS = scale * P * (dP - delta), element by element (no row
//      reduction: the forward's lse makes P exact block by block), zero
//      where masked;
//   3. dq += scale dS K, kept in dq itself (per vec4 of the head dim: 32 k
//      loads, 32 dq loads and 32 dq stores for 4096 FMAs; the first block
//      reads zeros).
// 224 vec4 accesses per 12288 FMAs (the forward: 160 per 8192). Blocks of
// 16 rows x 32 keys and 32 rows x 16 keys were measured ~15% slower, one
// pass computing S and dP together no faster (see op_attention.go).
// The head dim is walked by a runtime loop (one pipeline for every head
// dim); it must be a multiple of 4 (dv = D / 4 vec4s). Rows past lq are
// clamped and act as row lq - 1 (the invocation owning them owns row
// lq - 1 and computes the same values, so the stores agree; all of a d4
// step's loads come before its stores); keys past lk are clamped on load
// and masked.
// Bindings: 0 params {lq, lk, scale, causal, h0, dv, nh (slices in this
//   dispatch)}; 1 q [BH, Lq, D]; 2 k [BH, Lk, D]; 3 v [BH, Lk, D];
//   4 g (dO) [BH, Lq, D]; 5 lse [all BH, Lq]; 6 delta [all BH, Lq];
//   7 dq [BH, Lq, D] (read_write). q, k, v, g, dq are read as vec4 and
//   bound from slice h0 on, lse and delta whole.
// Dispatch: Grid1D(nh * ceil(Lq / 32), WG), WG = 8 (one SIMD group on
// llvmpipe); invocations take (slice, row block) pairs in one linear order.
struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32, dv: u32, nh: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;

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
// ld_dq is ldq for dq, or zeros when zero (the first block: dq holds
// garbage then; a select, not a branch); st_dq writes column r of b to
// row row + r, clamped like the loads.
fn ld_dq(off: u32, row: u32, d4: u32, zero: bool) -> mat4x4<f32> {
  let last = p.lq - 1u;
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select(dq[off + min(row, last) * p.dv + d4], z, zero), select(dq[off + min(row + 1u, last) * p.dv + d4], z, zero),
                     select(dq[off + min(row + 2u, last) * p.dv + d4], z, zero), select(dq[off + min(row + 3u, last) * p.dv + d4], z, zero));
}
fn st_dq(off: u32, row: u32, d4: u32, b: mat4x4<f32>) {
  let last = p.lq - 1u;
  dq[off + min(row, last) * p.dv + d4] = b[0];
  dq[off + min(row + 1u, last) * p.dv + d4] = b[1];
  dq[off + min(row + 2u, last) * p.dv + d4] = b[2];
  dq[off + min(row + 3u, last) * p.dv + d4] = b[3];
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

// S = Q K^T: c[NK*rg + kg] column r = S[i0 + 4rg + r][k0 + 4kg ..]
fn scores(qoff: u32, koff: u32, i0: u32, k0: u32) -> Blk {
  var t: Blk;
  for (var d4 = 0u; d4 < p.dv; d4++) {
    let a0 = ldq(qoff, i0 + 0u, d4);
    let a1 = ldq(qoff, i0 + 4u, d4);
    let a2 = ldq(qoff, i0 + 8u, d4);
    let a3 = ldq(qoff, i0 + 12u, d4);
    let a4 = ldq(qoff, i0 + 16u, d4);
    let a5 = ldq(qoff, i0 + 20u, d4);
    let a6 = ldq(qoff, i0 + 24u, d4);
    let a7 = ldq(qoff, i0 + 28u, d4);
    let b0 = transpose(ldk(koff, k0 + 0u, d4));
    let b1 = transpose(ldk(koff, k0 + 4u, d4));
    let b2 = transpose(ldk(koff, k0 + 8u, d4));
    let b3 = transpose(ldk(koff, k0 + 12u, d4));
    let b4 = transpose(ldk(koff, k0 + 16u, d4));
    let b5 = transpose(ldk(koff, k0 + 20u, d4));
    let b6 = transpose(ldk(koff, k0 + 24u, d4));
    let b7 = transpose(ldk(koff, k0 + 28u, d4));
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
// dP = dO V^T, laid out as scores
fn dprobs(qoff: u32, koff: u32, i0: u32, k0: u32) -> Blk {
  var t: Blk;
  for (var d4 = 0u; d4 < p.dv; d4++) {
    let a0 = ldg(qoff, i0 + 0u, d4);
    let a1 = ldg(qoff, i0 + 4u, d4);
    let a2 = ldg(qoff, i0 + 8u, d4);
    let a3 = ldg(qoff, i0 + 12u, d4);
    let a4 = ldg(qoff, i0 + 16u, d4);
    let a5 = ldg(qoff, i0 + 20u, d4);
    let a6 = ldg(qoff, i0 + 24u, d4);
    let a7 = ldg(qoff, i0 + 28u, d4);
    let b0 = transpose(ldv(koff, k0 + 0u, d4));
    let b1 = transpose(ldv(koff, k0 + 4u, d4));
    let b2 = transpose(ldv(koff, k0 + 8u, d4));
    let b3 = transpose(ldv(koff, k0 + 12u, d4));
    let b4 = transpose(ldv(koff, k0 + 16u, d4));
    let b5 = transpose(ldv(koff, k0 + 20u, d4));
    let b6 = transpose(ldv(koff, k0 + 24u, d4));
    let b7 = transpose(ldv(koff, k0 + 28u, d4));
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

// dsm returns scale * dS for four rows (column r: row i + r) and keys
// key..key+3 from their raw scores s and dP, the rows' lse l and delta d;
// zero where masked.
fn dsm(s: mat4x4<f32>, dp: mat4x4<f32>, key: u32, i: u32, l: vec4<f32>, d: vec4<f32>) -> mat4x4<f32> {
  let keys = vec4<u32>(key) + vec4<u32>(0u, 1u, 2u, 3u);
  let inr = keys < vec4<u32>(p.lk);
  let c = p.causal != 0u;
  let last = p.lq - 1u; // rows past lq act as row lq - 1 (see st_dq)
  let m0 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i, last)));
  let m1 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 1u, last)));
  let m2 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 2u, last)));
  let m3 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 3u, last)));
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select(z, exp(s[0] * p.scale - l.x) * (dp[0] - d.x) * p.scale, m0),
                     select(z, exp(s[1] * p.scale - l.y) * (dp[1] - d.y) * p.scale, m1),
                     select(z, exp(s[2] * p.scale - l.z) * (dp[2] - d.z) * p.scale, m2),
                     select(z, exp(s[3] * p.scale - l.w) * (dp[3] - d.w) * p.scale, m3));
}

const WG: u32 = 8u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  let nb = (p.lq + 31u) / 32u;
  let bh = t / nb;
  if (bh >= p.nh) { return; }
  let i0 = (t % nb) * 32u;
  let qoff = bh * p.lq * p.dv;
  let koff = bh * p.lk * p.dv;
  var kend = p.lk;
  if (p.causal != 0u) { kend = min(p.lk, i0 + 32u); }
  let lb = (p.h0 + bh) * p.lq;
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
  for (var k0 = 0u; k0 < kend; k0 += 32u) {
    let s = scores(qoff, koff, i0, k0);
    let dp = dprobs(qoff, koff, i0, k0);
    let ds0_0 = dsm(s.c[0], dp.c[0], k0 + 0u, i0 + 0u, l0, e0);
    let ds0_1 = dsm(s.c[1], dp.c[1], k0 + 4u, i0 + 0u, l0, e0);
    let ds0_2 = dsm(s.c[2], dp.c[2], k0 + 8u, i0 + 0u, l0, e0);
    let ds0_3 = dsm(s.c[3], dp.c[3], k0 + 12u, i0 + 0u, l0, e0);
    let ds0_4 = dsm(s.c[4], dp.c[4], k0 + 16u, i0 + 0u, l0, e0);
    let ds0_5 = dsm(s.c[5], dp.c[5], k0 + 20u, i0 + 0u, l0, e0);
    let ds0_6 = dsm(s.c[6], dp.c[6], k0 + 24u, i0 + 0u, l0, e0);
    let ds0_7 = dsm(s.c[7], dp.c[7], k0 + 28u, i0 + 0u, l0, e0);
    let ds1_0 = dsm(s.c[8], dp.c[8], k0 + 0u, i0 + 4u, l1, e1);
    let ds1_1 = dsm(s.c[9], dp.c[9], k0 + 4u, i0 + 4u, l1, e1);
    let ds1_2 = dsm(s.c[10], dp.c[10], k0 + 8u, i0 + 4u, l1, e1);
    let ds1_3 = dsm(s.c[11], dp.c[11], k0 + 12u, i0 + 4u, l1, e1);
    let ds1_4 = dsm(s.c[12], dp.c[12], k0 + 16u, i0 + 4u, l1, e1);
    let ds1_5 = dsm(s.c[13], dp.c[13], k0 + 20u, i0 + 4u, l1, e1);
    let ds1_6 = dsm(s.c[14], dp.c[14], k0 + 24u, i0 + 4u, l1, e1);
    let ds1_7 = dsm(s.c[15], dp.c[15], k0 + 28u, i0 + 4u, l1, e1);
    let ds2_0 = dsm(s.c[16], dp.c[16], k0 + 0u, i0 + 8u, l2, e2);
    let ds2_1 = dsm(s.c[17], dp.c[17], k0 + 4u, i0 + 8u, l2, e2);
    let ds2_2 = dsm(s.c[18], dp.c[18], k0 + 8u, i0 + 8u, l2, e2);
    let ds2_3 = dsm(s.c[19], dp.c[19], k0 + 12u, i0 + 8u, l2, e2);
    let ds2_4 = dsm(s.c[20], dp.c[20], k0 + 16u, i0 + 8u, l2, e2);
    let ds2_5 = dsm(s.c[21], dp.c[21], k0 + 20u, i0 + 8u, l2, e2);
    let ds2_6 = dsm(s.c[22], dp.c[22], k0 + 24u, i0 + 8u, l2, e2);
    let ds2_7 = dsm(s.c[23], dp.c[23], k0 + 28u, i0 + 8u, l2, e2);
    let ds3_0 = dsm(s.c[24], dp.c[24], k0 + 0u, i0 + 12u, l3, e3);
    let ds3_1 = dsm(s.c[25], dp.c[25], k0 + 4u, i0 + 12u, l3, e3);
    let ds3_2 = dsm(s.c[26], dp.c[26], k0 + 8u, i0 + 12u, l3, e3);
    let ds3_3 = dsm(s.c[27], dp.c[27], k0 + 12u, i0 + 12u, l3, e3);
    let ds3_4 = dsm(s.c[28], dp.c[28], k0 + 16u, i0 + 12u, l3, e3);
    let ds3_5 = dsm(s.c[29], dp.c[29], k0 + 20u, i0 + 12u, l3, e3);
    let ds3_6 = dsm(s.c[30], dp.c[30], k0 + 24u, i0 + 12u, l3, e3);
    let ds3_7 = dsm(s.c[31], dp.c[31], k0 + 28u, i0 + 12u, l3, e3);
    let ds4_0 = dsm(s.c[32], dp.c[32], k0 + 0u, i0 + 16u, l4, e4);
    let ds4_1 = dsm(s.c[33], dp.c[33], k0 + 4u, i0 + 16u, l4, e4);
    let ds4_2 = dsm(s.c[34], dp.c[34], k0 + 8u, i0 + 16u, l4, e4);
    let ds4_3 = dsm(s.c[35], dp.c[35], k0 + 12u, i0 + 16u, l4, e4);
    let ds4_4 = dsm(s.c[36], dp.c[36], k0 + 16u, i0 + 16u, l4, e4);
    let ds4_5 = dsm(s.c[37], dp.c[37], k0 + 20u, i0 + 16u, l4, e4);
    let ds4_6 = dsm(s.c[38], dp.c[38], k0 + 24u, i0 + 16u, l4, e4);
    let ds4_7 = dsm(s.c[39], dp.c[39], k0 + 28u, i0 + 16u, l4, e4);
    let ds5_0 = dsm(s.c[40], dp.c[40], k0 + 0u, i0 + 20u, l5, e5);
    let ds5_1 = dsm(s.c[41], dp.c[41], k0 + 4u, i0 + 20u, l5, e5);
    let ds5_2 = dsm(s.c[42], dp.c[42], k0 + 8u, i0 + 20u, l5, e5);
    let ds5_3 = dsm(s.c[43], dp.c[43], k0 + 12u, i0 + 20u, l5, e5);
    let ds5_4 = dsm(s.c[44], dp.c[44], k0 + 16u, i0 + 20u, l5, e5);
    let ds5_5 = dsm(s.c[45], dp.c[45], k0 + 20u, i0 + 20u, l5, e5);
    let ds5_6 = dsm(s.c[46], dp.c[46], k0 + 24u, i0 + 20u, l5, e5);
    let ds5_7 = dsm(s.c[47], dp.c[47], k0 + 28u, i0 + 20u, l5, e5);
    let ds6_0 = dsm(s.c[48], dp.c[48], k0 + 0u, i0 + 24u, l6, e6);
    let ds6_1 = dsm(s.c[49], dp.c[49], k0 + 4u, i0 + 24u, l6, e6);
    let ds6_2 = dsm(s.c[50], dp.c[50], k0 + 8u, i0 + 24u, l6, e6);
    let ds6_3 = dsm(s.c[51], dp.c[51], k0 + 12u, i0 + 24u, l6, e6);
    let ds6_4 = dsm(s.c[52], dp.c[52], k0 + 16u, i0 + 24u, l6, e6);
    let ds6_5 = dsm(s.c[53], dp.c[53], k0 + 20u, i0 + 24u, l6, e6);
    let ds6_6 = dsm(s.c[54], dp.c[54], k0 + 24u, i0 + 24u, l6, e6);
    let ds6_7 = dsm(s.c[55], dp.c[55], k0 + 28u, i0 + 24u, l6, e6);
    let ds7_0 = dsm(s.c[56], dp.c[56], k0 + 0u, i0 + 28u, l7, e7);
    let ds7_1 = dsm(s.c[57], dp.c[57], k0 + 4u, i0 + 28u, l7, e7);
    let ds7_2 = dsm(s.c[58], dp.c[58], k0 + 8u, i0 + 28u, l7, e7);
    let ds7_3 = dsm(s.c[59], dp.c[59], k0 + 12u, i0 + 28u, l7, e7);
    let ds7_4 = dsm(s.c[60], dp.c[60], k0 + 16u, i0 + 28u, l7, e7);
    let ds7_5 = dsm(s.c[61], dp.c[61], k0 + 20u, i0 + 28u, l7, e7);
    let ds7_6 = dsm(s.c[62], dp.c[62], k0 + 24u, i0 + 28u, l7, e7);
    let ds7_7 = dsm(s.c[63], dp.c[63], k0 + 28u, i0 + 28u, l7, e7);
    let first = k0 == 0u;
    for (var d4 = 0u; d4 < p.dv; d4++) {
      let kb0 = ldk(koff, k0 + 0u, d4);
      let kb1 = ldk(koff, k0 + 4u, d4);
      let kb2 = ldk(koff, k0 + 8u, d4);
      let kb3 = ldk(koff, k0 + 12u, d4);
      let kb4 = ldk(koff, k0 + 16u, d4);
      let kb5 = ldk(koff, k0 + 20u, d4);
      let kb6 = ldk(koff, k0 + 24u, d4);
      let kb7 = ldk(koff, k0 + 28u, d4);
      let o0 = kb0 * ds0_0 + kb1 * ds0_1 + kb2 * ds0_2 + kb3 * ds0_3 + kb4 * ds0_4 + kb5 * ds0_5 + kb6 * ds0_6 + kb7 * ds0_7 + ld_dq(qoff, i0 + 0u, d4, first);
      let o1 = kb0 * ds1_0 + kb1 * ds1_1 + kb2 * ds1_2 + kb3 * ds1_3 + kb4 * ds1_4 + kb5 * ds1_5 + kb6 * ds1_6 + kb7 * ds1_7 + ld_dq(qoff, i0 + 4u, d4, first);
      let o2 = kb0 * ds2_0 + kb1 * ds2_1 + kb2 * ds2_2 + kb3 * ds2_3 + kb4 * ds2_4 + kb5 * ds2_5 + kb6 * ds2_6 + kb7 * ds2_7 + ld_dq(qoff, i0 + 8u, d4, first);
      let o3 = kb0 * ds3_0 + kb1 * ds3_1 + kb2 * ds3_2 + kb3 * ds3_3 + kb4 * ds3_4 + kb5 * ds3_5 + kb6 * ds3_6 + kb7 * ds3_7 + ld_dq(qoff, i0 + 12u, d4, first);
      let o4 = kb0 * ds4_0 + kb1 * ds4_1 + kb2 * ds4_2 + kb3 * ds4_3 + kb4 * ds4_4 + kb5 * ds4_5 + kb6 * ds4_6 + kb7 * ds4_7 + ld_dq(qoff, i0 + 16u, d4, first);
      let o5 = kb0 * ds5_0 + kb1 * ds5_1 + kb2 * ds5_2 + kb3 * ds5_3 + kb4 * ds5_4 + kb5 * ds5_5 + kb6 * ds5_6 + kb7 * ds5_7 + ld_dq(qoff, i0 + 20u, d4, first);
      let o6 = kb0 * ds6_0 + kb1 * ds6_1 + kb2 * ds6_2 + kb3 * ds6_3 + kb4 * ds6_4 + kb5 * ds6_5 + kb6 * ds6_6 + kb7 * ds6_7 + ld_dq(qoff, i0 + 24u, d4, first);
      let o7 = kb0 * ds7_0 + kb1 * ds7_1 + kb2 * ds7_2 + kb3 * ds7_3 + kb4 * ds7_4 + kb5 * ds7_5 + kb6 * ds7_6 + kb7 * ds7_7 + ld_dq(qoff, i0 + 28u, d4, first);
      st_dq(qoff, i0 + 0u, d4, o0);
      st_dq(qoff, i0 + 4u, d4, o1);
      st_dq(qoff, i0 + 8u, d4, o2);
      st_dq(qoff, i0 + 12u, d4, o3);
      st_dq(qoff, i0 + 16u, d4, o4);
      st_dq(qoff, i0 + 20u, d4, o5);
      st_dq(qoff, i0 + 24u, d4, o6);
      st_dq(qoff, i0 + 28u, d4, o7);
    }
  }
}
