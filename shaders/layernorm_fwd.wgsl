// layernorm_fwd: y = (x - mean) * rstd * w + b over the last dimension
// (PyTorch nn.LayerNorm with biased variance), saving mean and
// rstd = 1/sqrt(var + eps) per row for the backward. The variance is
// computed in two passes (mean first, then the mean squared deviation).
// One workgroup per row; sums are reduced in shared memory.
// flags: bit 0 weight present, bit 1 bias present (absent ones are bound to
// a dummy and not read).
// Entry points main64 / main256: workgroups of 64 or 256 threads.
// The dispatch may cover a chunk of rows starting at global row row0: x and
// y are bound from that row on, mean and rstd whole.
// Bindings: 0 params {rows, cols, eps, flags, row0}; 1 x [rows, cols];
//   2 w [cols]; 3 b [cols]; 4 y [rows, cols] (read_write);
//   5 mean [all rows] (read_write); 6 rstd [all rows] (read_write).
// Dispatch: Grid1D(rows, 1) workgroups; row = wid.x + wid.y * nwg.x.
struct P { rows: u32, cols: u32, eps: f32, flags: u32, row0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;

var<workgroup> red: array<f32, 256>;

fn sum(v: f32, lid: u32, wg: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = wg / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn run(row: u32, lid: u32, wg: u32) {
  if (row >= p.rows) { return; }
  let base = row * p.cols;
  let n = f32(p.cols);
  var s = 0.0;
  for (var i = lid; i < p.cols; i += wg) {
    s += x[base + i];
  }
  let mu = sum(s, lid, wg) / n;
  var q = 0.0;
  for (var i = lid; i < p.cols; i += wg) {
    let d = x[base + i] - mu;
    q += d * d;
  }
  let r = inverseSqrt(sum(q, lid, wg) / n + p.eps);
  for (var i = lid; i < p.cols; i += wg) {
    var v = (x[base + i] - mu) * r;
    if ((p.flags & 1u) != 0u) { v *= w[i]; }
    if ((p.flags & 2u) != 0u) { v += b[i]; }
    y[base + i] = v;
  }
  if (lid == 0u) {
    mean[p.row0 + row] = mu;
    rstd[p.row0 + row] = r;
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
