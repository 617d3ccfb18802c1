// groupnorm_fwd_stats: per-channel statistics for group norm: for each row
// (n, c) of S spatial values, st[row] = (mean, M2) with M2 the sum of squared
// deviations from the row's own mean (two passes over the row).
// groupnorm_fwd_combine.wgsl merges the channels of a group.
// One workgroup per row; sums are reduced in shared memory.
// Entry points main64 / main256: workgroups of 64 or 256 threads.
// The dispatch may cover a chunk of rows starting at global row row0: x is
// bound from that row on, st whole.
// Bindings: 0 params {rows, S, row0}; 1 x [rows, S];
//   2 st [all rows, 2] (read_write).
// Dispatch: Grid1D(rows, 1) workgroups; row = wid.x + wid.y * nwg.x.
struct P { rows: u32, s: u32, row0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> st: array<f32>;

var<workgroup> red: array<f32, 256>;

fn sum(v: f32, lid: u32, wg: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var k = wg / 2u; k > 0u; k = k / 2u) {
    if (lid < k) { red[lid] = red[lid] + red[lid + k]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn run(row: u32, lid: u32, wg: u32) {
  if (row >= p.rows) { return; }
  let base = row * p.s;
  var a = 0.0;
  for (var i = lid; i < p.s; i += wg) {
    a += x[base + i];
  }
  let mu = sum(a, lid, wg) / f32(p.s);
  var q = 0.0;
  for (var i = lid; i < p.s; i += wg) {
    let d = x[base + i] - mu;
    q += d * d;
  }
  let m2 = sum(q, lid, wg);
  if (lid == 0u) {
    st[2u * (p.row0 + row)] = mu;
    st[2u * (p.row0 + row) + 1u] = m2;
  }
}

@compute @workgroup_size(64)
fn main64(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  run(wid.x + wid.y * nwg.x, lid, 64u);
}

@compute @workgroup_size(256)
fn main256(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
  run(wid.x + wid.y * nwg.x, lid, 256u);
}
