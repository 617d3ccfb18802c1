// softmax_fwd: y = softmax(x) over the last dimension, numerically stable
// (the row maximum is subtracted before exp). One workgroup per row; the
// row max and the sum of exponentials are reduced in shared memory.
// Entry points main64 / main256: workgroups of 64 or 256 threads (this wgpu
// takes only literal workgroup sizes), for short or long rows.
// Bindings: 0 params {rows, cols}; 1 x [rows, cols]; 2 y [rows, cols] (read_write).
// Dispatch: Grid1D(rows, 1) workgroups; row = wid.x + wid.y * nwg.x.
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

var<workgroup> red: array<f32, 256>;

// reduce combines v over the wg threads: the maximum when is_max, else the sum.
fn reduce(v: f32, lid: u32, wg: u32, is_max: bool) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = wg / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      if (is_max) {
        red[lid] = max(red[lid], red[lid + s]);
      } else {
        red[lid] = red[lid] + red[lid + s];
      }
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn run(row: u32, lid: u32, wg: u32) {
  if (row >= p.rows) { return; }
  let base = row * p.cols;
  var m = -3.0e38;
  for (var i = lid; i < p.cols; i += wg) {
    m = max(m, x[base + i]);
  }
  m = reduce(m, lid, wg, true);
  var s = 0.0;
  for (var i = lid; i < p.cols; i += wg) {
    s += exp(x[base + i] - m);
  }
  s = reduce(s, lid, wg, false);
  let inv = 1.0 / s;
  for (var i = lid; i < p.cols; i += wg) {
    y[base + i] = exp(x[base + i] - m) * inv;
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
