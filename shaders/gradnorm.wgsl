// gradnorm: global L2 norm of many gradient tensors and the clip factor,
// without a readback.
// Entry `partial`: each workgroup sums x^2 over a strided slice of x and
//   writes partials[wg]. Bindings: 0 params {n}; 1 x [n]; 2 partials [groups] rw.
//   Dispatch: (groups, 1, 1), groups <= 256.
// Entry `collect`: one workgroup writes sum(partials[0..count]) to acc[slot].
//   Bindings: 0 params {count, slot}; 1 partials; 2 acc [tensors + 2] rw.
//   Dispatch: (1, 1, 1).
// Entry `finish`: acc[n] = sqrt(sum acc[0..n]) (the norm) and
//   acc[n+1] = min(1, max_norm / (norm + 1e-6)) (the clip factor; 1 when
//   max_norm <= 0). Bindings: 0 params {n, max_norm}; 1 partials (unused
//   input slot, kept for one layout); 2 acc rw. Dispatch: (1, 1, 1).
struct P { n: u32, slot: u32, max_norm: f32, _p: u32 }
@group(0) @binding(0) var<uniform> pr: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 256>;

fn reduce(lid: u32) {
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
}

@compute @workgroup_size(256)
fn partial(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  var s = 0.0;
  let stride = nwg.x * 256u;
  for (var i = wg.x * 256u + l.x; i < pr.n; i += stride) {
    let v = x[i];
    s += v * v;
  }
  red[l.x] = s;
  reduce(l.x);
  if (l.x == 0u) { out[wg.x] = red[0]; }
}

@compute @workgroup_size(256)
fn collect(@builtin(local_invocation_id) l: vec3<u32>) {
  var s = 0.0;
  for (var i = l.x; i < pr.n; i += 256u) { s += x[i]; }
  red[l.x] = s;
  reduce(l.x);
  if (l.x == 0u) { out[pr.slot] = red[0]; }
}

@compute @workgroup_size(1)
fn finish() {
  var s = 0.0;
  for (var i = 0u; i < pr.n; i++) { s += out[i]; }
  let norm = sqrt(s) + 0.0 * x[0];
  out[pr.n] = norm;
  var c = 1.0;
  if (pr.max_norm > 0.0) { c = min(1.0, pr.max_norm / (norm + 1e-6)); }
  out[pr.n + 1u] = c;
}
