// attention_fwd_direct: scaled dot-product attention forward for CPU
// adapters (lavapipe), register-blocked like matmul_fwd.wgsl's "direct"
// entry. Same results as attention_fwd.wgsl:
//   o[i] = sum_j softmax_j(scale * q[i].k[j]) v[j],  lse[i] = log sum_j exp(scale * q[i].k[j])
// per (batch, head) slice bh, masking keys j >= lk and, when causal, j > i.
//
// On llvmpipe every load or store whose address is not a compile-time
// constant costs a loop over the SIMD lanes, while arithmetic is cheap, so
// what counts is flops per vec4 memory access. Each invocation owns 16
// consecutive query rows and walks the keys in blocks of 16 (flash style,
// never more than one 16x16 block of scores at a time):
//   1. S = Q K^T for the 16x16 block, in sixteen mat4x4 accumulators (per
//      vec4 of the head dim: 16 q and 16 k loads for 1024 FMAs);
//   2. online softmax per row over the block (exact: the running max m and
//      sum l are updated every block, the old output scaled by
//      alpha = exp(m_old - m_new));
//   3. O = alpha O + P V for the block's 16 keys: the unnormalised output
//      lives in o itself (per vec4 of the head dim: 16 v loads, 16 o loads
//      and 16 o stores for 1024 FMAs; the first block skips the loads, the
//      last divides by l).
// About 80 vec4 accesses per 2048 FMAs, against the matmul kernel's 32 per
// 1024. The head dim is walked by a runtime loop (one pipeline for every
// head dim); it must be a multiple of 4 (dv = D / 4 vec4s).
// Rows past lq are clamped on load and never stored; keys past lk are
// clamped on load and masked. o is written only by the invocation that
// owns the row.
// Bindings: 0 params {lq, lk, scale, causal, h0, dv}; 1 q [BH, Lq, D];
//   2 k [BH, Lk, D]; 3 v [BH, Lk, D]; 4 o [BH, Lq, D] (read_write);
//   5 lse [all BH, Lq] (read_write). q, k, v, o are read as vec4 and bound
//   from slice h0 on (the dispatch may cover a chunk of slices), lse whole.
// Dispatch: (ceil(Lq / (16*WG)), slices, 1), WG = 8.
struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32, dv: u32 }
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
fn ldo(off: u32, row: u32, d4: u32) -> mat4x4<f32> {
  let last = p.lq - 1u;
  return mat4x4<f32>(o[off + min(row, last) * p.dv + d4], o[off + min(row + 1u, last) * p.dv + d4],
                     o[off + min(row + 2u, last) * p.dv + d4], o[off + min(row + 3u, last) * p.dv + d4]);
}
// sto writes column r of b to o[row + r][4*d4 ..], rows past lq skipped.
fn sto(off: u32, row: u32, d4: u32, b: mat4x4<f32>) {
  if (row < p.lq) { o[off + row * p.dv + d4] = b[0]; }
  if (row + 1u < p.lq) { o[off + (row + 1u) * p.dv + d4] = b[1]; }
  if (row + 2u < p.lq) { o[off + (row + 2u) * p.dv + d4] = b[2]; }
  if (row + 3u < p.lq) { o[off + (row + 3u) * p.dv + d4] = b[3]; }
}

// cols returns b with column r multiplied by f[r].
fn cols(b: mat4x4<f32>, f: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(b[0] * f.x, b[1] * f.y, b[2] * f.z, b[3] * f.w);
}

// Scores of the block: c[4*rg + kg] column r holds
// S[row i0 + 4*rg + r][keys k0 + 4*kg .. + 3]. Constant indices only.
struct Blk { c: array<mat4x4<f32>, 16> }

fn scores(qoff: u32, koff: u32, i0: u32, k0: u32) -> Blk {
  var t: Blk;
  for (var d4 = 0u; d4 < p.dv; d4++) {
    let a0 = ldq(qoff, i0, d4);
    let a1 = ldq(qoff, i0 + 4u, d4);
    let a2 = ldq(qoff, i0 + 8u, d4);
    let a3 = ldq(qoff, i0 + 12u, d4);
    // Column j of b_kg holds k[k0 + 4*kg .. + 3][4*d4 + j]: (b_kg * a_rg)
    // column r sums q[row r][4*d4 + j] * k[key][4*d4 + j] over j.
    let b0 = transpose(ldk(koff, k0, d4));
    let b1 = transpose(ldk(koff, k0 + 4u, d4));
    let b2 = transpose(ldk(koff, k0 + 8u, d4));
    let b3 = transpose(ldk(koff, k0 + 12u, d4));
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
  }
  return t;
}

// msk returns the scaled scores s (column r: row i + r, keys key..key+3)
// with masked entries set to NEG.
fn msk(s: mat4x4<f32>, key: u32, i: u32) -> mat4x4<f32> {
  let keys = vec4<u32>(key) + vec4<u32>(0u, 1u, 2u, 3u);
  let inr = keys < vec4<u32>(p.lk);
  let c = p.causal != 0u;
  let m0 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(i));
  let m1 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(i + 1u));
  let m2 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(i + 2u));
  let m3 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(i + 3u));
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

// Rows is the online-softmax state of four rows (component r: row 4*rg + r)
// and the block's probabilities for them (p[kg]: keys 4*kg .. + 3).
struct Rows { m: vec4<f32>, l: vec4<f32>, alpha: vec4<f32>, p: array<mat4x4<f32>, 4> }

// soft advances the state of four rows over one block: s0..s3 are their
// raw scores (key groups 0..3), i their first row, k0 the block's first key.
fn soft(s0: mat4x4<f32>, s1: mat4x4<f32>, s2: mat4x4<f32>, s3: mat4x4<f32>, i: u32, k0: u32,
        m: vec4<f32>, l: vec4<f32>) -> Rows {
  let x0 = msk(s0, k0, i);
  let x1 = msk(s1, k0 + 4u, i);
  let x2 = msk(s2, k0 + 8u, i);
  let x3 = msk(s3, k0 + 12u, i);
  let mx = vec4<f32>(hmax(max(max(x0[0], x1[0]), max(x2[0], x3[0]))), hmax(max(max(x0[1], x1[1]), max(x2[1], x3[1]))),
                     hmax(max(max(x0[2], x1[2]), max(x2[2], x3[2]))), hmax(max(max(x0[3], x1[3]), max(x2[3], x3[3]))));
  var r: Rows;
  r.m = max(m, mx);
  r.alpha = exp(m - r.m);
  r.p[0] = pexp(x0, r.m);
  r.p[1] = pexp(x1, r.m);
  r.p[2] = pexp(x2, r.m);
  r.p[3] = pexp(x3, r.m);
  let t = r.p[0] + r.p[1] + r.p[2] + r.p[3];
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
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let i0 = (wid.x * WG + lid) * 16u;
  if (i0 >= p.lq) { return; }
  let qoff = bh * p.lq * p.dv;
  let koff = bh * p.lk * p.dv;
  var kend = p.lk;
  if (p.causal != 0u) { kend = min(p.lk, (wid.x + 1u) * WG * 16u); } // uniform per workgroup
  var m0 = vec4<f32>(NEG);
  var m1 = m0;
  var m2 = m0;
  var m3 = m0;
  var l0 = vec4<f32>(0.0);
  var l1 = l0;
  var l2 = l0;
  var l3 = l0;
  for (var k0 = 0u; k0 < kend; k0 += 16u) {
    let s = scores(qoff, koff, i0, k0);
    let r0 = soft(s.c[0], s.c[1], s.c[2], s.c[3], i0, k0, m0, l0);
    let r1 = soft(s.c[4], s.c[5], s.c[6], s.c[7], i0 + 4u, k0, m1, l1);
    let r2 = soft(s.c[8], s.c[9], s.c[10], s.c[11], i0 + 8u, k0, m2, l2);
    let r3 = soft(s.c[12], s.c[13], s.c[14], s.c[15], i0 + 12u, k0, m3, l3);
    m0 = r0.m;
    m1 = r1.m;
    m2 = r2.m;
    m3 = r3.m;
    l0 = r0.l;
    l1 = r1.l;
    l2 = r2.l;
    l3 = r3.l;
    let last = k0 + 16u >= kend;
    let f0 = fin(l0, last);
    let f1 = fin(l1, last);
    let f2 = fin(l2, last);
    let f3 = fin(l3, last);
    // P and alpha pre-multiplied by the finishing factor.
    let a0 = r0.alpha * f0;
    let a1 = r1.alpha * f1;
    let a2 = r2.alpha * f2;
    let a3 = r3.alpha * f3;
    let p00 = cols(r0.p[0], f0);
    let p01 = cols(r0.p[1], f0);
    let p02 = cols(r0.p[2], f0);
    let p03 = cols(r0.p[3], f0);
    let p10 = cols(r1.p[0], f1);
    let p11 = cols(r1.p[1], f1);
    let p12 = cols(r1.p[2], f1);
    let p13 = cols(r1.p[3], f1);
    let p20 = cols(r2.p[0], f2);
    let p21 = cols(r2.p[1], f2);
    let p22 = cols(r2.p[2], f2);
    let p23 = cols(r2.p[3], f2);
    let p30 = cols(r3.p[0], f3);
    let p31 = cols(r3.p[1], f3);
    let p32 = cols(r3.p[2], f3);
    let p33 = cols(r3.p[3], f3);
    let first = k0 == 0u;
    for (var d4 = 0u; d4 < p.dv; d4++) {
      // Column c of v_kg holds v[k0 + 4*kg + c][4*d4 ..]: (v_kg * p) column
      // r sums p[row r][key c] * v[key c].
      let v0 = ldv(koff, k0, d4);
      let v1 = ldv(koff, k0 + 4u, d4);
      let v2 = ldv(koff, k0 + 8u, d4);
      let v3 = ldv(koff, k0 + 12u, d4);
      var o0 = v0 * p00 + v1 * p01 + v2 * p02 + v3 * p03;
      var o1 = v0 * p10 + v1 * p11 + v2 * p12 + v3 * p13;
      var o2 = v0 * p20 + v1 * p21 + v2 * p22 + v3 * p23;
      var o3 = v0 * p30 + v1 * p31 + v2 * p32 + v3 * p33;
      if (!first) {
        o0 += cols(ldo(qoff, i0, d4), a0);
        o1 += cols(ldo(qoff, i0 + 4u, d4), a1);
        o2 += cols(ldo(qoff, i0 + 8u, d4), a2);
        o3 += cols(ldo(qoff, i0 + 12u, d4), a3);
      }
      sto(qoff, i0, d4, o0);
      sto(qoff, i0 + 4u, d4, o1);
      sto(qoff, i0 + 8u, d4, o2);
      sto(qoff, i0 + 12u, d4, o3);
    }
  }
  let lb = (p.h0 + bh) * p.lq + i0;
  let e0 = m0 + log(l0);
  let e1 = m1 + log(l1);
  let e2 = m2 + log(l2);
  let e3 = m3 + log(l3);
  for (var r = 0u; r < 4u; r++) {
    if (i0 + r < p.lq) { lse[lb + r] = e0[r]; }
    if (i0 + 4u + r < p.lq) { lse[lb + 4u + r] = e1[r]; }
    if (i0 + 8u + r < p.lq) { lse[lb + 8u + r] = e2[r]; }
    if (i0 + 12u + r < p.lq) { lse[lb + 12u + r] = e3[r]; }
  }
}
