// attention_fwd_direct: scaled dot-product attention forward for CPU
// adapters (lavapipe), register-blocked like matmul_fwd.wgsl's "direct"
// entry. Same results as attention_fwd.wgsl:
//   o[i] = sum_j softmax_j(scale * q[i].k[j]) v[j],  lse[i] = log sum_j exp(scale * q[i].k[j])
// per (batch, head) slice bh, masking keys j >= lk and, when causal, j > i.
//
// On llvmpipe every load or store whose address is not a compile-time
// constant is a loop over the SIMD lanes (with a bounds check per
// component), while arithmetic is cheap, so what counts is flops per vec4
// memory access. Each invocation owns 32 consecutive query rows and walks
// the keys in blocks of 32 (flash style: never more than one 32x32 block
// of scores at a time, held in 64 mat4x4 accumulators):
//   1. S = Q K^T for the block (per vec4 of the head dim: 32 q and 32 k
//      loads for 4096 FMAs);
//   2. online softmax per row over the block (exact: the running max m and
//      sum l are updated every block, and the old output is scaled by
//      alpha = exp(m_old - m_new));
//   3. O = alpha O + P V for the block's keys, with the unnormalised output
//      kept in o itself (per vec4 of the head dim: 32 v loads, 32 o loads
//      and 32 o stores for 4096 FMAs; the first block reads zeros, the last
//      also divides by l).
// 160 vec4 accesses per 8192 FMAs, against the matmul kernel's 32 per 1024.
// Measured on lavapipe at 1x8x1024x1024x40 (CPU time, against one another
// in one process): 16x16 blocks ~0.8x the matmul rate, 16x32 ~1.0x, 32x32
// ~1.1x; 32x48, 48x32 and 32x64 were 0-10% faster still but took 45-90 s
// to JIT (32x32: ~1.3 s). Skipping the masks gained nothing, skipping exp
// ~5%.
// The head dim is walked by a runtime loop (one pipeline for every head
// dim); it must be a multiple of 4 (dv = D / 4 vec4s). Rows past lq are
// clamped (see sto); keys past lk are clamped on load and masked.
// Bindings: 0 params {lq, lk, scale, causal, h0, dv, nh (slices in this
//   dispatch)}; 1 q [BH, Lq, D];
//   2 k [BH, Lk, D]; 3 v [BH, Lk, D]; 4 o [BH, Lq, D] (read_write);
//   5 lse [all BH, Lq] (read_write). q, k, v, o are read as vec4 and bound
//   from slice h0 on (the dispatch may cover a chunk of slices), lse whole.
// Dispatch: Grid1D(nh * ceil(Lq / 32), WG), WG = 8 (one SIMD group on
// llvmpipe).
struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32, dv: u32, nh: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

const NEG: f32 = -3.0e38; // masked score, and the running max before any key

// ldq returns rows row..row+3 of this slice's q at vec4 d4, as the columns
// of a matrix (column r = q[row + r][4*d4 .. 4*d4 + 3]).
fn ldq(off: u32, row: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lq - 1u;
  return mat4x4<f32>(q[off + min(row, last) * p.dv + d4], q[off + min(row + 1u, last) * p.dv + d4],
                     q[off + min(row + 2u, last) * p.dv + d4], q[off + min(row + 3u, last) * p.dv + d4]);
}
fn ldk(off: u32, key: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lk - 1u;
  return mat4x4<f32>(k[off + min(key, last) * p.dv + d4], k[off + min(key + 1u, last) * p.dv + d4],
                     k[off + min(key + 2u, last) * p.dv + d4], k[off + min(key + 3u, last) * p.dv + d4]);
}
fn ldv(off: u32, key: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lk - 1u;
  return mat4x4<f32>(v[off + min(key, last) * p.dv + d4], v[off + min(key + 1u, last) * p.dv + d4],
                     v[off + min(key + 2u, last) * p.dv + d4], v[off + min(key + 3u, last) * p.dv + d4]);
}
// ldo is ldq for o, or zeros when zero (the first key block: o holds
// garbage then; a select, not a branch, so no multiply meets a NaN).
fn ldo(off: u32, row: u32, d4: u32, zero: bool) -> mat4x4<f32> {
  let last = p.lq - 1u;
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select(o[off + min(row, last) * p.dv + d4], z, zero), select(o[off + min(row + 1u, last) * p.dv + d4], z, zero),
                     select(o[off + min(row + 2u, last) * p.dv + d4], z, zero), select(o[off + min(row + 3u, last) * p.dv + d4], z, zero));
}
// sto writes column r of b to o[row + r][4*d4 ..]. Rows past lq are clamped
// to lq - 1: the invocation owning them also owns row lq - 1 and computes
// the same values for them (same q row, same mask), so the stores agree.
fn sto(off: u32, row: u32, d4: u32, b: mat4x4<f32>) {
  let last = p.lq - 1u;
  o[off + min(row, last) * p.dv + d4] = b[0];
  o[off + min(row + 1u, last) * p.dv + d4] = b[1];
  o[off + min(row + 2u, last) * p.dv + d4] = b[2];
  o[off + min(row + 3u, last) * p.dv + d4] = b[3];
}

// cols returns b with column r multiplied by f[r].
fn cols(b: mat4x4<f32>, f: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(b[0] * f.x, b[1] * f.y, b[2] * f.z, b[3] * f.w);
}

// Scores of the block: c[8*rg + kg] column r holds
// S[row i0 + 4*rg + r][keys k0 + 4*kg .. + 3]. Constant indices only.
struct Blk { c: array<mat4x4<f32>, 64> }

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
    // Column j of b_kg holds k[k0 + 4*kg .. + 3][4*d4 + j]: (b_kg * a_rg)
    // column r sums q[row r][4*d4 + j] * k[key][4*d4 + j] over j.
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

// msk returns the scaled scores s (column r: row i + r, keys key..key+3)
// with masked entries set to NEG.
fn msk(s: mat4x4<f32>, key: u32, i: u32) -> mat4x4<f32> {
  let keys = vec4<u32>(key) + vec4<u32>(0u, 1u, 2u, 3u);
  let inr = keys < vec4<u32>(p.lk);
  let c = p.causal != 0u;
  let last = p.lq - 1u; // rows past lq act as row lq - 1 (see sto)
  let m0 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i, last)));
  let m1 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 1u, last)));
  let m2 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 2u, last)));
  let m3 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 3u, last)));
  let n = vec4<f32>(NEG);
  return mat4x4<f32>(select(n, s[0] * p.scale, m0), select(n, s[1] * p.scale, m1),
                     select(n, s[2] * p.scale, m2), select(n, s[3] * p.scale, m3));
}

fn hmax(x: vec4<f32>) -> f32 { return max(max(x.x, x.y), max(x.z, x.w)); }
fn hsum(x: vec4<f32>) -> f32 { return (x.x + x.y) + (x.z + x.w); }

// pexp returns exp(x - m) per column (m[r] for column r), 0 where masked.
fn pexp(x: mat4x4<f32>, m: vec4<f32>) -> mat4x4<f32> {
  let z = vec4<f32>(0.0);
  let n = vec4<f32>(NEG);
  return mat4x4<f32>(select(exp(x[0] - m.x), z, x[0] == n), select(exp(x[1] - m.y), z, x[1] == n),
                     select(exp(x[2] - m.z), z, x[2] == n), select(exp(x[3] - m.w), z, x[3] == n));
}

// Rows is the online-softmax state of four rows (component r: row
// 4*rg + r) and the block's probabilities for them (p[kg]: keys 4*kg .. + 3).
struct Rows { m: vec4<f32>, l: vec4<f32>, alpha: vec4<f32>, p: array<mat4x4<f32>, 8> }

// soft advances the state of four rows over one block: s0..s7 are their
// raw scores (key groups 0..7), i their first row, k0 the block's first key.
fn soft(s0: mat4x4<f32>, s1: mat4x4<f32>, s2: mat4x4<f32>, s3: mat4x4<f32>, s4: mat4x4<f32>, s5: mat4x4<f32>, s6: mat4x4<f32>, s7: mat4x4<f32>, i: u32, k0: u32, m: vec4<f32>, l: vec4<f32>) -> Rows {
  let x0 = msk(s0, k0 + 0u, i);
  let x1 = msk(s1, k0 + 4u, i);
  let x2 = msk(s2, k0 + 8u, i);
  let x3 = msk(s3, k0 + 12u, i);
  let x4 = msk(s4, k0 + 16u, i);
  let x5 = msk(s5, k0 + 20u, i);
  let x6 = msk(s6, k0 + 24u, i);
  let x7 = msk(s7, k0 + 28u, i);
  let mx = vec4<f32>(hmax(max(max(max(x0[0], x1[0]), max(x2[0], x3[0])), max(max(x4[0], x5[0]), max(x6[0], x7[0])))), hmax(max(max(max(x0[1], x1[1]), max(x2[1], x3[1])), max(max(x4[1], x5[1]), max(x6[1], x7[1])))), hmax(max(max(max(x0[2], x1[2]), max(x2[2], x3[2])), max(max(x4[2], x5[2]), max(x6[2], x7[2])))), hmax(max(max(max(x0[3], x1[3]), max(x2[3], x3[3])), max(max(x4[3], x5[3]), max(x6[3], x7[3])))));
  var r: Rows;
  r.m = max(m, mx);
  r.alpha = exp(m - r.m);
  r.p[0] = pexp(x0, r.m);
  r.p[1] = pexp(x1, r.m);
  r.p[2] = pexp(x2, r.m);
  r.p[3] = pexp(x3, r.m);
  r.p[4] = pexp(x4, r.m);
  r.p[5] = pexp(x5, r.m);
  r.p[6] = pexp(x6, r.m);
  r.p[7] = pexp(x7, r.m);
  let t = r.p[0] + r.p[1] + r.p[2] + r.p[3] + r.p[4] + r.p[5] + r.p[6] + r.p[7];
  r.l = l * r.alpha + vec4<f32>(hsum(t[0]), hsum(t[1]), hsum(t[2]), hsum(t[3]));
  return r;
}

// fin returns the factor that finishes four rows: 1/l on the last block
// (0 for a row with no unmasked key), else 1.
fn fin(l: vec4<f32>, last: bool) -> vec4<f32> {
  let inv = select(vec4<f32>(0.0), 1.0 / l, l > vec4<f32>(0.0));
  return select(vec4<f32>(1.0), inv, vec4<bool>(last));
}

const WG: u32 = 8u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  // Invocation t owns rows i0 .. i0 + 31 of slice bh: the slices' row blocks
  // in one linear order, so short sequences still fill the SIMD lanes.
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
  let nb = (p.lq + 31u) / 32u;
  let bh = t / nb;
  if (bh >= p.nh) { return; }
  let i0 = (t % nb) * 32u;
  let qoff = bh * p.lq * p.dv;
  let koff = bh * p.lk * p.dv;
  var kend = p.lk;
  if (p.causal != 0u) { kend = min(p.lk, i0 + 32u); }
  var m0 = vec4<f32>(NEG);
  var l0 = vec4<f32>(0.0);
  var m1 = vec4<f32>(NEG);
  var l1 = vec4<f32>(0.0);
  var m2 = vec4<f32>(NEG);
  var l2 = vec4<f32>(0.0);
  var m3 = vec4<f32>(NEG);
  var l3 = vec4<f32>(0.0);
  var m4 = vec4<f32>(NEG);
  var l4 = vec4<f32>(0.0);
  var m5 = vec4<f32>(NEG);
  var l5 = vec4<f32>(0.0);
  var m6 = vec4<f32>(NEG);
  var l6 = vec4<f32>(0.0);
  var m7 = vec4<f32>(NEG);
  var l7 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < kend; k0 += 32u) {
    let s = scores(qoff, koff, i0, k0);
    let r0 = soft(s.c[0], s.c[1], s.c[2], s.c[3], s.c[4], s.c[5], s.c[6], s.c[7], i0 + 0u, k0, m0, l0);
    let r1 = soft(s.c[8], s.c[9], s.c[10], s.c[11], s.c[12], s.c[13], s.c[14], s.c[15], i0 + 4u, k0, m1, l1);
    let r2 = soft(s.c[16], s.c[17], s.c[18], s.c[19], s.c[20], s.c[21], s.c[22], s.c[23], i0 + 8u, k0, m2, l2);
    let r3 = soft(s.c[24], s.c[25], s.c[26], s.c[27], s.c[28], s.c[29], s.c[30], s.c[31], i0 + 12u, k0, m3, l3);
    let r4 = soft(s.c[32], s.c[33], s.c[34], s.c[35], s.c[36], s.c[37], s.c[38], s.c[39], i0 + 16u, k0, m4, l4);
    let r5 = soft(s.c[40], s.c[41], s.c[42], s.c[43], s.c[44], s.c[45], s.c[46], s.c[47], i0 + 20u, k0, m5, l5);
    let r6 = soft(s.c[48], s.c[49], s.c[50], s.c[51], s.c[52], s.c[53], s.c[54], s.c[55], i0 + 24u, k0, m6, l6);
    let r7 = soft(s.c[56], s.c[57], s.c[58], s.c[59], s.c[60], s.c[61], s.c[62], s.c[63], i0 + 28u, k0, m7, l7);
    m0 = r0.m;
    l0 = r0.l;
    m1 = r1.m;
    l1 = r1.l;
    m2 = r2.m;
    l2 = r2.l;
    m3 = r3.m;
    l3 = r3.l;
    m4 = r4.m;
    l4 = r4.l;
    m5 = r5.m;
    l5 = r5.l;
    m6 = r6.m;
    l6 = r6.l;
    m7 = r7.m;
    l7 = r7.l;
    let last = k0 + 32u >= kend;
    let f0 = fin(l0, last);
    let a0 = r0.alpha * f0;
    let f1 = fin(l1, last);
    let a1 = r1.alpha * f1;
    let f2 = fin(l2, last);
    let a2 = r2.alpha * f2;
    let f3 = fin(l3, last);
    let a3 = r3.alpha * f3;
    let f4 = fin(l4, last);
    let a4 = r4.alpha * f4;
    let f5 = fin(l5, last);
    let a5 = r5.alpha * f5;
    let f6 = fin(l6, last);
    let a6 = r6.alpha * f6;
    let f7 = fin(l7, last);
    let a7 = r7.alpha * f7;
    let p0_0 = cols(r0.p[0], f0);
    let p0_1 = cols(r0.p[1], f0);
    let p0_2 = cols(r0.p[2], f0);
    let p0_3 = cols(r0.p[3], f0);
    let p0_4 = cols(r0.p[4], f0);
    let p0_5 = cols(r0.p[5], f0);
    let p0_6 = cols(r0.p[6], f0);
    let p0_7 = cols(r0.p[7], f0);
    let p1_0 = cols(r1.p[0], f1);
    let p1_1 = cols(r1.p[1], f1);
    let p1_2 = cols(r1.p[2], f1);
    let p1_3 = cols(r1.p[3], f1);
    let p1_4 = cols(r1.p[4], f1);
    let p1_5 = cols(r1.p[5], f1);
    let p1_6 = cols(r1.p[6], f1);
    let p1_7 = cols(r1.p[7], f1);
    let p2_0 = cols(r2.p[0], f2);
    let p2_1 = cols(r2.p[1], f2);
    let p2_2 = cols(r2.p[2], f2);
    let p2_3 = cols(r2.p[3], f2);
    let p2_4 = cols(r2.p[4], f2);
    let p2_5 = cols(r2.p[5], f2);
    let p2_6 = cols(r2.p[6], f2);
    let p2_7 = cols(r2.p[7], f2);
    let p3_0 = cols(r3.p[0], f3);
    let p3_1 = cols(r3.p[1], f3);
    let p3_2 = cols(r3.p[2], f3);
    let p3_3 = cols(r3.p[3], f3);
    let p3_4 = cols(r3.p[4], f3);
    let p3_5 = cols(r3.p[5], f3);
    let p3_6 = cols(r3.p[6], f3);
    let p3_7 = cols(r3.p[7], f3);
    let p4_0 = cols(r4.p[0], f4);
    let p4_1 = cols(r4.p[1], f4);
    let p4_2 = cols(r4.p[2], f4);
    let p4_3 = cols(r4.p[3], f4);
    let p4_4 = cols(r4.p[4], f4);
    let p4_5 = cols(r4.p[5], f4);
    let p4_6 = cols(r4.p[6], f4);
    let p4_7 = cols(r4.p[7], f4);
    let p5_0 = cols(r5.p[0], f5);
    let p5_1 = cols(r5.p[1], f5);
    let p5_2 = cols(r5.p[2], f5);
    let p5_3 = cols(r5.p[3], f5);
    let p5_4 = cols(r5.p[4], f5);
    let p5_5 = cols(r5.p[5], f5);
    let p5_6 = cols(r5.p[6], f5);
    let p5_7 = cols(r5.p[7], f5);
    let p6_0 = cols(r6.p[0], f6);
    let p6_1 = cols(r6.p[1], f6);
    let p6_2 = cols(r6.p[2], f6);
    let p6_3 = cols(r6.p[3], f6);
    let p6_4 = cols(r6.p[4], f6);
    let p6_5 = cols(r6.p[5], f6);
    let p6_6 = cols(r6.p[6], f6);
    let p6_7 = cols(r6.p[7], f6);
    let p7_0 = cols(r7.p[0], f7);
    let p7_1 = cols(r7.p[1], f7);
    let p7_2 = cols(r7.p[2], f7);
    let p7_3 = cols(r7.p[3], f7);
    let p7_4 = cols(r7.p[4], f7);
    let p7_5 = cols(r7.p[5], f7);
    let p7_6 = cols(r7.p[6], f7);
    let p7_7 = cols(r7.p[7], f7);
    // P and alpha carry the finishing factor (1/l on the last block).
    let first = k0 == 0u;
    for (var d4 = 0u; d4 < p.dv; d4++) {
      // Column c of v_kg holds v[k0 + 4*kg + c][4*d4 ..]: (v_kg * p) column
      // r sums p[row r][key c] * v[key c].
      let v0 = ldv(koff, k0 + 0u, d4);
      let v1 = ldv(koff, k0 + 4u, d4);
      let v2 = ldv(koff, k0 + 8u, d4);
      let v3 = ldv(koff, k0 + 12u, d4);
      let v4 = ldv(koff, k0 + 16u, d4);
      let v5 = ldv(koff, k0 + 20u, d4);
      let v6 = ldv(koff, k0 + 24u, d4);
      let v7 = ldv(koff, k0 + 28u, d4);
      var o0 = v0 * p0_0 + v1 * p0_1 + v2 * p0_2 + v3 * p0_3 + v4 * p0_4 + v5 * p0_5 + v6 * p0_6 + v7 * p0_7;
      var o1 = v0 * p1_0 + v1 * p1_1 + v2 * p1_2 + v3 * p1_3 + v4 * p1_4 + v5 * p1_5 + v6 * p1_6 + v7 * p1_7;
      var o2 = v0 * p2_0 + v1 * p2_1 + v2 * p2_2 + v3 * p2_3 + v4 * p2_4 + v5 * p2_5 + v6 * p2_6 + v7 * p2_7;
      var o3 = v0 * p3_0 + v1 * p3_1 + v2 * p3_2 + v3 * p3_3 + v4 * p3_4 + v5 * p3_5 + v6 * p3_6 + v7 * p3_7;
      var o4 = v0 * p4_0 + v1 * p4_1 + v2 * p4_2 + v3 * p4_3 + v4 * p4_4 + v5 * p4_5 + v6 * p4_6 + v7 * p4_7;
      var o5 = v0 * p5_0 + v1 * p5_1 + v2 * p5_2 + v3 * p5_3 + v4 * p5_4 + v5 * p5_5 + v6 * p5_6 + v7 * p5_7;
      var o6 = v0 * p6_0 + v1 * p6_1 + v2 * p6_2 + v3 * p6_3 + v4 * p6_4 + v5 * p6_5 + v6 * p6_6 + v7 * p6_7;
      var o7 = v0 * p7_0 + v1 * p7_1 + v2 * p7_2 + v3 * p7_3 + v4 * p7_4 + v5 * p7_5 + v6 * p7_6 + v7 * p7_7;
      o0 += cols(ldo(qoff, i0 + 0u, d4, first), a0);
      o1 += cols(ldo(qoff, i0 + 4u, d4, first), a1);
      o2 += cols(ldo(qoff, i0 + 8u, d4, first), a2);
      o3 += cols(ldo(qoff, i0 + 12u, d4, first), a3);
      o4 += cols(ldo(qoff, i0 + 16u, d4, first), a4);
      o5 += cols(ldo(qoff, i0 + 20u, d4, first), a5);
      o6 += cols(ldo(qoff, i0 + 24u, d4, first), a6);
      o7 += cols(ldo(qoff, i0 + 28u, d4, first), a7);
      sto(qoff, i0 + 0u, d4, o0);
      sto(qoff, i0 + 4u, d4, o1);
      sto(qoff, i0 + 8u, d4, o2);
      sto(qoff, i0 + 12u, d4, o3);
      sto(qoff, i0 + 16u, d4, o4);
      sto(qoff, i0 + 20u, d4, o5);
      sto(qoff, i0 + 24u, d4, o6);
      sto(qoff, i0 + 28u, d4, o7);
    }
  }
  let lb = (p.h0 + bh) * p.lq + i0;
  let e0 = m0 + log(l0);
  let e1 = m1 + log(l1);
  let e2 = m2 + log(l2);
  let e3 = m3 + log(l3);
  let e4 = m4 + log(l4);
  let e5 = m5 + log(l5);
  let e6 = m6 + log(l6);
  let e7 = m7 + log(l7);
  for (var r = 0u; r < 4u; r++) {
    if (i0 + 0u + r < p.lq) { lse[lb + 0u + r] = e0[r]; }
    if (i0 + 4u + r < p.lq) { lse[lb + 4u + r] = e1[r]; }
    if (i0 + 8u + r < p.lq) { lse[lb + 8u + r] = e2[r]; }
    if (i0 + 12u + r < p.lq) { lse[lb + 12u + r] = e3[r]; }
    if (i0 + 16u + r < p.lq) { lse[lb + 16u + r] = e4[r]; }
    if (i0 + 20u + r < p.lq) { lse[lb + 20u + r] = e5[r]; }
    if (i0 + 24u + r < p.lq) { lse[lb + 24u + r] = e6[r]; }
    if (i0 + 28u + r < p.lq) { lse[lb + 28u + r] = e7[r]; }
  }
}
