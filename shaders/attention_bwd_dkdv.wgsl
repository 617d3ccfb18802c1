// attention_bwd_dkdv: key and value gradients of attention, flash style.
// With s = scale * q[i].k[j] (masked: i >= Lq, or j > i when causal),
// p = exp(s - lse[i]), dp = dO[i].v[j] and ds = p * (dp - delta[i]):
//   dv[j] = sum_i p * dO[i],   dk[j] = scale * sum_i ds * q[i].
// A workgroup of 64 threads owns 64*TR key rows (thread lid owns keys
// k0 + r*64 + lid, r < TR) and streams over query blocks of BK rows (q, dO,
// lse, delta staged in shared memory); scores are recomputed query by
// query, never stored. Each dk, dv element has one writer.
// Consts: D, DV = ceil(D/4), BK (query rows per shared block), TR,
//   KDV = BK*DV, TDV = TR*DV.
// The dispatch may cover a chunk of slices starting at slice h0: q, k, v,
// g, dk, dv are bound from that slice on, lse and delta whole.
// Bindings: 0 params {lq, lk, scale, causal, h0}; 1 q [BH, Lq, D];
//   2 k [BH, Lk, D]; 3 v [BH, Lk, D]; 4 g (dO) [BH, Lq, D];
//   5 lse [all BH, Lq]; 6 delta [all BH, Lq]; 7 dk [BH, Lk, D] (read_write);
//   8 dv [BH, Lk, D] (read_write).
// Dispatch: (ceil(Lk / (64*TR)), slices, 1).
struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> g: array<f32>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;

const WG: u32 = 64u;

var<workgroup> qs: array<vec4<f32>, KDV>; // [BK, DV] query block
var<workgroup> gs: array<vec4<f32>, KDV>; // [BK, DV] output gradient block
var<workgroup> ls: array<f32, BK>;        // lse of the block's queries
var<workgroup> ds_: array<f32, BK>;       // delta of the block's queries

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let j0 = wid.x * WG * TR;
  var kr: array<vec4<f32>, TDV>;  // [TR, DV] scaled key rows
  var vr: array<vec4<f32>, TDV>;  // [TR, DV] value rows
  var dka: array<vec4<f32>, TDV>; // [TR, DV] dk / scale
  var dva: array<vec4<f32>, TDV>; // [TR, DV] dv
  var a: array<vec4<f32>, TR>;
  var b: array<vec4<f32>, TR>;
  var pr: array<f32, TR>;
  var dsr: array<f32, TR>;
  for (var r = 0u; r < TR; r++) {
    let j = j0 + r * WG + lid;
    for (var c = 0u; c < DV; c++) {
      var t = vec4<f32>(0.0);
      var u = vec4<f32>(0.0);
      if (j < p.lk) {
        let base = (bh * p.lk + j) * D + 4u * c;
        t.x = k[base];
        u.x = v[base];
        if (4u * c + 1u < D) { t.y = k[base + 1u]; u.y = v[base + 1u]; }
        if (4u * c + 2u < D) { t.z = k[base + 2u]; u.z = v[base + 2u]; }
        if (4u * c + 3u < D) { t.w = k[base + 3u]; u.w = v[base + 3u]; }
      }
      kr[r * DV + c] = t * p.scale;
      vr[r * DV + c] = u;
      dka[r * DV + c] = vec4<f32>(0.0);
      dva[r * DV + c] = vec4<f32>(0.0);
    }
  }
  // Causal: queries before this workgroup's first key see none of its keys.
  var istart = 0u;
  if (p.causal != 0u) { istart = min(j0, p.lq) / BK * BK; }
  for (var i0 = istart; i0 < p.lq; i0 += BK) {
    workgroupBarrier();
    for (var idx = lid; idx < KDV; idx += WG) {
      let i = i0 + idx / DV;
      let c = idx % DV;
      var qv = vec4<f32>(0.0);
      var gv = vec4<f32>(0.0);
      if (i < p.lq) {
        let base = (bh * p.lq + i) * D + 4u * c;
        qv.x = q[base];
        gv.x = g[base];
        if (4u * c + 1u < D) { qv.y = q[base + 1u]; gv.y = g[base + 1u]; }
        if (4u * c + 2u < D) { qv.z = q[base + 2u]; gv.z = g[base + 2u]; }
        if (4u * c + 3u < D) { qv.w = q[base + 3u]; gv.w = g[base + 3u]; }
      }
      qs[idx] = qv;
      gs[idx] = gv;
    }
    for (var t = lid; t < BK; t += WG) {
      var lv = 0.0;
      var dl = 0.0;
      if (i0 + t < p.lq) {
        lv = lse[(p.h0 + bh) * p.lq + i0 + t];
        dl = delta[(p.h0 + bh) * p.lq + i0 + t];
      }
      ls[t] = lv;
      ds_[t] = dl;
    }
    workgroupBarrier();
    let in_ = min(BK, p.lq - i0);
    for (var ii = 0u; ii < in_; ii++) {
      let i = i0 + ii;
      for (var r = 0u; r < TR; r++) {
        a[r] = vec4<f32>(0.0);
        b[r] = vec4<f32>(0.0);
      }
      for (var c = 0u; c < DV; c++) {
        let qq = qs[ii * DV + c];
        let gg = gs[ii * DV + c];
        for (var r = 0u; r < TR; r++) {
          a[r] = fma(qq, kr[r * DV + c], a[r]);
          b[r] = fma(gg, vr[r * DV + c], b[r]);
        }
      }
      let li = ls[ii];
      let di = ds_[ii];
      for (var r = 0u; r < TR; r++) {
        let j = j0 + r * WG + lid;
        pr[r] = 0.0;
        dsr[r] = 0.0;
        if (p.causal == 0u || j <= i) {
          pr[r] = exp(dot(a[r], vec4<f32>(1.0)) - li);
          dsr[r] = pr[r] * (dot(b[r], vec4<f32>(1.0)) - di);
        }
      }
      for (var c = 0u; c < DV; c++) {
        let qq = qs[ii * DV + c];
        let gg = gs[ii * DV + c];
        for (var r = 0u; r < TR; r++) {
          dva[r * DV + c] = fma(vec4<f32>(pr[r]), gg, dva[r * DV + c]);
          dka[r * DV + c] = fma(vec4<f32>(dsr[r]), qq, dka[r * DV + c]);
        }
      }
    }
  }
  for (var r = 0u; r < TR; r++) {
    let j = j0 + r * WG + lid;
    if (j < p.lk) {
      for (var c = 0u; c < DV; c++) {
        let t = dka[r * DV + c] * p.scale;
        let u = dva[r * DV + c];
        let base = (bh * p.lk + j) * D + 4u * c;
        dk[base] = t.x;
        dv[base] = u.x;
        if (4u * c + 1u < D) { dk[base + 1u] = t.y; dv[base + 1u] = u.y; }
        if (4u * c + 2u < D) { dk[base + 2u] = t.z; dv[base + 2u] = u.z; }
        if (4u * c + 3u < D) { dk[base + 3u] = t.w; dv[base + 3u] = u.w; }
      }
    }
  }
}
