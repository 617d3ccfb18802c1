// reduce_fwd: out[o] = scale * sum over r of x[offset(o, r)], a parallel
// tree reduction in workgroup memory.
// The reduction is in canonical form (op_reduce.go): K outputs indexed by
// the kept dimensions kd (row-major, input strides ks) and R reduced
// positions indexed by the reduced dimensions rd (row-major, strides rs);
// at most 4 of each. offset(o, r) = xoff + sum kept coords * ks + sum
// reduced coords * rs.
// Work unit = slot = (o, s): the reduced range is cut into S segments of
// seg positions; slot o*S + s sums segment s of output o (S > 1 is the first
// of two passes; the second reduces the [K, S] partials). tpo threads (a
// power of two <= 256) share a slot: lane l sums positions l, l + tpo, ...
// of the segment, then the workgroup halves its shared array log2(tpo)
// times. A workgroup of 256 threads holds 256 / tpo slots.
// Bindings: 0 params; 1 x (read); 2 out (read_write), written at ooff + slot.
// Dispatch: Grid1D(ceil(K*S / (256/tpo)) * 256, 256) — one 256-thread
// workgroup per 256/tpo slots, folded into y past 65535.
struct P {
  slots: u32, s: u32, seg: u32, r: u32,
  tpo: u32, kr: u32, rr: u32, xoff: u32,
  ooff: u32, scale: f32, _p0: u32, _p1: u32,
  kd: vec4<u32>, ks: vec4<u32>, rd: vec4<u32>, rs: vec4<u32>,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> sh: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) tid: u32) {
  let w = wid.x + wid.y * nwg.x;
  let slot = w * (256u / p.tpo) + tid / p.tpo;
  let lane = tid % p.tpo;
  var acc = 0.0;
  if (slot < p.slots) {
    let o = slot / p.s;
    let sg = slot % p.s;
    var rem = o;
    var base = p.xoff;
    for (var d = i32(p.kr) - 1; d >= 0; d--) {
      base += (rem % p.kd[d]) * p.ks[d];
      rem = rem / p.kd[d];
    }
    let r0 = sg * p.seg;
    let r1 = min(p.r, r0 + p.seg);
    if (p.rr <= 1u) {
      // One reduced group (the common case): no index arithmetic.
      let rs0 = select(0u, p.rs[0], p.rr == 1u);
      for (var r = r0 + lane; r < r1; r += p.tpo) {
        acc += x[base + r * rs0];
      }
    } else {
      for (var r = r0 + lane; r < r1; r += p.tpo) {
        var rr = r;
        var off = base;
        for (var d = i32(p.rr) - 1; d >= 0; d--) {
          off += (rr % p.rd[d]) * p.rs[d];
          rr = rr / p.rd[d];
        }
        acc += x[off];
      }
    }
  }
  sh[tid] = acc;
  workgroupBarrier();
  for (var st = p.tpo / 2u; st > 0u; st = st / 2u) {
    if (lane < st) { sh[tid] += sh[tid + st]; }
    workgroupBarrier();
  }
  if (lane == 0u && slot < p.slots) {
    out[p.ooff + slot] = sh[tid] * p.scale;
  }
}
