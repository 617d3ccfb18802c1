// softmax_bwd: dx = y * (g - sum(g * y)) over the last dimension, where y is
// the forward output. One workgroup per row; the dot product is reduced in
// shared memory.
// Entry points main64 / main256: workgroups of 64 or 256 threads.
// Bindings: 0 params {rows, cols}; 1 g [rows, cols]; 2 y [rows, cols];
//   3 dx [rows, cols] (read_write).
// Dispatch: Grid1D(rows, 1) workgroups; row = wid.x + wid.y * nwg.x.
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

var<workgroup> red: array<f32, 256>;

fn run(row: u32, lid: u32, wg: u32) {
  if (row >= p.rows) { return; }
  let base = row * p.cols;
  var s = 0.0;
  for (var i = lid; i < p.cols; i += wg) {
    s += g[base + i] * y[base + i];
  }
  red[lid] = s;
  workgroupBarrier();
  for (var k = wg / 2u; k > 0u; k = k / 2u) {
    if (lid < k) { red[lid] = red[lid] + red[lid + k]; }
    workgroupBarrier();
  }
  let dot = red[0];
  for (var i = lid; i < p.cols; i += wg) {
    dx[base + i] = y[base + i] * (g[base + i] - dot);
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
