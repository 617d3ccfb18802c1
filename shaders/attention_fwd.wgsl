// attention_fwd: scaled dot-product attention, flash style.
//   o[i] = sum_j softmax_j(scale * q[i].k[j]) v[j],  lse[i] = log sum_j exp(scale * q[i].k[j])
// per (batch, head) slice bh, masking keys j >= Lk and, when causal, j > i.
// Never materialises the Lq x Lk scores: a workgroup of 64 threads owns
// 64*TR query rows (thread lid owns rows q0 + r*64 + lid, r < TR) and
// streams over key/value blocks of BK rows staged in shared memory. Keys
// are taken one at a time (online softmax): per row a reference max m, a
// running sum l of exp(s - m) and an unnormalised output accumulator. m
// moves only when a score exceeds it by more than RESCALE, and then l and
// the accumulator are rescaled by exp(m_old - m_new); so exp(s - m) stays
// below e^RESCALE and rescaling is rare. lse = m + log(l) is exact whatever
// m is. Each thread holds its rows of q (pre-scaled) and the accumulator
// in private arrays; k and v rows are read from shared memory as vec4, the
// same address for all threads.
// Consts: D (head dim), DV = ceil(D/4), BK (keys per block), TR (rows per
//   thread), KDV = BK*DV, TDV = TR*DV.
// The dispatch may cover a chunk of slices starting at slice h0: q, k, v, o
// are bound from that slice on, lse whole.
// Bindings: 0 params {lq, lk, scale, causal, h0}; 1 q [BH, Lq, D];
//   2 k [BH, Lk, D]; 3 v [BH, Lk, D]; 4 o [BH, Lq, D] (read_write);
//   5 lse [all BH, Lq] (read_write).
// Dispatch: (ceil(Lq / (64*TR)), slices, 1).
struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
@group(0) @binding(5) var<storage, read_write> lse: array<f32>;

const WG: u32 = 64u;
const NEG: f32 = -3.0e38; // running max before any key
const RESCALE: f32 = 8.0; // e^8 ~ 3000: sums of Lk such terms stay far from f32 overflow

var<workgroup> ks: array<vec4<f32>, KDV>; // [BK, DV] key block
var<workgroup> vs: array<vec4<f32>, KDV>; // [BK, DV] value block

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let q0 = wid.x * WG * TR;
  var qr: array<vec4<f32>, TDV>;  // [TR, DV] scaled query rows
  var acc: array<vec4<f32>, TDV>; // [TR, DV] unnormalised output
  var pr: array<f32, TR>;         // probabilities for the current key
  var m: array<f32, TR>;
  var l: array<f32, TR>;
  var a: array<vec4<f32>, TR>;
  for (var r = 0u; r < TR; r++) {
    let i = q0 + r * WG + lid;
    m[r] = NEG;
    l[r] = 0.0;
    for (var c = 0u; c < DV; c++) {
      var t = vec4<f32>(0.0);
      if (i < p.lq) {
        let base = (bh * p.lq + i) * D + 4u * c;
        t.x = q[base];
        if (4u * c + 1u < D) { t.y = q[base + 1u]; }
        if (4u * c + 2u < D) { t.z = q[base + 2u]; }
        if (4u * c + 3u < D) { t.w = q[base + 3u]; }
      }
      qr[r * DV + c] = t * p.scale;
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
    var jn = BK;
    if (p.causal != 0u) { jn = min(BK, kend - k0); }
    for (var j = 0u; j < jn; j++) {
      let key = k0 + j;
      for (var r = 0u; r < TR; r++) { a[r] = vec4<f32>(0.0); }
      for (var c = 0u; c < DV; c++) {
        let kk = ks[j * DV + c];
        for (var r = 0u; r < TR; r++) { a[r] = fma(qr[r * DV + c], kk, a[r]); }
      }
      for (var r = 0u; r < TR; r++) {
        let i = q0 + r * WG + lid;
        var sc = dot(a[r], vec4<f32>(1.0));
        if (key >= p.lk || (p.causal != 0u && key > i)) {
          pr[r] = 0.0;
        } else {
          // Lazy rescaling (see the header); the first key always rescales
          // (from m = NEG), which zeroes l and the accumulator.
          if (sc > m[r] + RESCALE) {
            let alpha = exp(m[r] - sc);
            m[r] = sc;
            l[r] *= alpha;
            for (var c = 0u; c < DV; c++) { acc[r * DV + c] *= alpha; }
          }
          pr[r] = exp(sc - m[r]);
        }
        l[r] += pr[r];
      }
      for (var c = 0u; c < DV; c++) {
        let vv = vs[j * DV + c];
        for (var r = 0u; r < TR; r++) {
          acc[r * DV + c] = fma(vec4<f32>(pr[r]), vv, acc[r * DV + c]);
        }
      }
    }
  }
  for (var r = 0u; r < TR; r++) {
    let i = q0 + r * WG + lid;
    if (i < p.lq) {
      var inv = 0.0;
      if (l[r] > 0.0) { inv = 1.0 / l[r]; }
      for (var c = 0u; c < DV; c++) {
        let t = acc[r * DV + c] * inv;
        let base = (bh * p.lq + i) * D + 4u * c;
        o[base] = t.x;
        if (4u * c + 1u < D) { o[base + 1u] = t.y; }
        if (4u * c + 2u < D) { o[base + 2u] = t.z; }
        if (4u * c + 3u < D) { o[base + 3u] = t.w; }
      }
      lse[(p.h0 + bh) * p.lq + i] = m[r] + log(l[r]);
    }
  }
}
