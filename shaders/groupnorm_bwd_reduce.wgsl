// groupnorm_bwd_reduce: per-channel sums for the group norm backward: for
// each row (n, c) of S spatial values,
//   ab[row] = (sum g, sum g * xhat),  xhat = (x - mean[ng]) * rstd[ng],
// with ng = (row0 + row) / cg the row's group (rows of a chunk start at
// global row row0). groupnorm_bwd_combine.wgsl turns these into dweight,
// dbias and the per-group sums that dx needs.
// One workgroup per row; sums are reduced in shared memory.
// Entry points main64 / main256: workgroups of 64 or 256 threads.
// g and x are bound from row row0 on, the others whole.
// Bindings: 0 params {rows, S, cg, row0}; 1 g [rows, S]; 2 x [rows, S];
//   3 mean [N*G]; 4 rstd [N*G]; 5 ab [all rows, 2] (read_write).
// Dispatch: Grid1D(rows, 1) workgroups; row = wid.x + wid.y * nwg.x.
struct P { rows: u32, s: u32, cg: u32, row0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> ab: array<f32>;

var<workgroup> red: array<vec2<f32>, 256>;

fn run(row: u32, lid: u32, wg: u32) {
  if (row >= p.rows) { return; }
  let ng = (p.row0 + row) / p.cg;
  let mu = mean[ng];
  let r = rstd[ng];
  let base = row * p.s;
  var a = vec2<f32>(0.0);
  for (var i = lid; i < p.s; i += wg) {
    let gv = g[base + i];
    a += vec2<f32>(gv, gv * (x[base + i] - mu) * r);
  }
  red[lid] = a;
  workgroupBarrier();
  for (var k = wg / 2u; k > 0u; k = k / 2u) {
    if (lid < k) { red[lid] = red[lid] + red[lid + k]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    ab[2u * (p.row0 + row)] = red[0].x;
    ab[2u * (p.row0 + row) + 1u] = red[0].y;
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
