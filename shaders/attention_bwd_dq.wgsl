// attention_bwd_dq: query gradient of attention, flash style. With
// s = scale * q[i].k[j] (masked: j >= Lk, or j > i when causal),
// p = exp(s - lse[i]), dp = dO[i].v[j] and ds = p * (dp - delta[i]):
//   dq[i] = scale * sum_j ds * k[j].
// A workgroup of 64 threads owns 64*TR query rows (thread lid owns rows
// q0 + r*64 + lid, r < TR) and streams over key/value blocks of BK rows
// staged in shared memory; scores are recomputed key by key from q, k and
// the saved logsumexp, never stored. Each dq element has one writer.
// Consts: D, DV = ceil(D/4), BK, TR, KDV = BK*DV, TDV = TR*DV.
// The dispatch may cover a chunk of slices starting at slice h0: q, k, v,
// g, dq are bound from that slice on, lse and delta whole.
// Bindings: 0 params {lq, lk, scale, causal, h0}; 1 q [BH, Lq, D];
//   2 k [BH, Lk, D]; 3 v [BH, Lk, D]; 4 g (dO) [BH, Lq, D];
//   5 lse [all BH, Lq]; 6 delta [all BH, Lq]; 7 dq [BH, Lq, D] (read_write).
// Dispatch: (ceil(Lq / (64*TR)), slices, 1).
struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;

const WG: u32 = 64u;

var<workgroup> ks: array<vec4<f32>, KDV>; // [BK, DV] key block
var<workgroup> vs: array<vec4<f32>, KDV>; // [BK, DV] value block

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let q0 = wid.x * WG * TR;
  var qr: array<vec4<f32>, TDV>;  // [TR, DV] scaled query rows
  var gr: array<vec4<f32>, TDV>;  // [TR, DV] output gradient rows
  var acc: array<vec4<f32>, TDV>; // [TR, DV] dq / scale
  var lr: array<f32, TR>;
  var dr: array<f32, TR>;
  var a: array<vec4<f32>, TR>;
  var b: array<vec4<f32>, TR>;
  var ds: array<f32, TR>;
  for (var r = 0u; r < TR; r++) {
    let i = q0 + r * WG + lid;
    lr[r] = 0.0;
    dr[r] = 0.0;
    if (i < p.lq) {
      lr[r] = lse[(p.h0 + bh) * p.lq + i];
      dr[r] = delta[(p.h0 + bh) * p.lq + i];
    }
    for (var c = 0u; c < DV; c++) {
      var t = vec4<f32>(0.0);
      var u = vec4<f32>(0.0);
      if (i < p.lq) {
        let base = (bh * p.lq + i) * D + 4u * c;
        t.x = q[base];
        u.x = g[base];
        if (4u * c + 1u < D) { t.y = q[base + 1u]; u.y = g[base + 1u]; }
        if (4u * c + 2u < D) { t.z = q[base + 2u]; u.z = g[base + 2u]; }
        if (4u * c + 3u < D) { t.w = q[base + 3u]; u.w = g[base + 3u]; }
      }
      qr[r * DV + c] = t * p.scale;
      gr[r * DV + c] = u;
      acc[r * DV + c] = vec4<f32>(0.0);
    }
  }
  var kend = p.lk;
  if (p.causal != 0u) { kend = min(p.lk, q0 + WG * TR); }
  for (var k0 = 0u; k0 < kend; k0 += BK) {
    workgroupBarrier();
    for (var idx = lid; idx < KDV; idx += WG) {
      let key = k0 + idx / DV;
      let c = idx % DV;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (key < p.lk) {
        let base = (bh * p.lk + key) * D + 4u * c;
        kv.x = k[base];
        vv.x = v[base];
        if (4u * c + 1u < D) { kv.y = k[base + 1u]; vv.y = v[base + 1u]; }
        if (4u * c + 2u < D) { kv.z = k[base + 2u]; vv.z = v[base + 2u]; }
        if (4u * c + 3u < D) { kv.w = k[base + 3u]; vv.w = v[base + 3u]; }
      }
      ks[idx] = kv;
      vs[idx] = vv;
    }
    workgroupBarrier();
    let jn = min(BK, kend - k0);
    for (var j = 0u; j < jn; j++) {
      let key = k0 + j;
      for (var r = 0u; r < TR; r++) {
        a[r] = vec4<f32>(0.0);
        b[r] = vec4<f32>(0.0);
      }
      for (var c = 0u; c < DV; c++) {
        let kk = ks[j * DV + c];
        let vv = vs[j * DV + c];
        for (var r = 0u; r < TR; r++) {
          a[r] = fma(qr[r * DV + c], kk, a[r]);
          b[r] = fma(gr[r * DV + c], vv, b[r]);
        }
      }
      for (var r = 0u; r < TR; r++) {
        let i = q0 + r * WG + lid;
        ds[r] = 0.0;
        if (p.causal == 0u || key <= i) {
          let pj = exp(dot(a[r], vec4<f32>(1.0)) - lr[r]);
          ds[r] = pj * (dot(b[r], vec4<f32>(1.0)) - dr[r]);
        }
      }
      for (var c = 0u; c < DV; c++) {
        let kk = ks[j * DV + c];
        for (var r = 0u; r < TR; r++) {
          acc[r * DV + c] = fma(vec4<f32>(ds[r]), kk, acc[r * DV + c]);
        }
      }
    }
  }
  for (var r = 0u; r < TR; r++) {
    let i = q0 + r * WG + lid;
    if (i < p.lq) {
      for (var c = 0u; c < DV; c++) {
        let t = acc[r * DV + c] * p.scale;
        let base = (bh * p.lq + i) * D + 4u * c;
        dq[base] = t.x;
        if (4u * c + 1u < D) { dq[base + 1u] = t.y; }
        if (4u * c + 2u < D) { dq[base + 2u] = t.z; }
        if (4u * c + 3u < D) { dq[base + 3u] = t.w; }
      }
    }
  }
}
