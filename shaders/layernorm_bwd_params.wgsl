// layernorm_bwd_params: partial column sums for the weight and bias
// gradients of layer norm: over the rows of one part,
//   part[pi, 0, c] = sum g * xhat   (-> dweight),
//   part[pi, 1, c] = sum g          (-> dbias),
// with xhat = (x - mean) * rstd and pi = part_base + wid.y.
// layernorm_bwd_sum.wgsl adds the parts up.
// A workgroup of 256 threads covers 64 columns with 4 row lanes; the lanes
// are added in shared memory.
// The dispatch may cover a chunk of rows starting at global row row0: g and
// x are bound from that row on, mean, rstd and part whole.
// Bindings: 0 params {rows, cols, rows_per_part, part_base, row0};
//   1 g [rows, cols]; 2 x [rows, cols]; 3 mean [all rows]; 4 rstd [all rows];
//   5 part [parts, 2, cols] (read_write).
// Dispatch: (ceil(cols / 64), ceil(rows / rows_per_part), 1).
struct P { rows: u32, cols: u32, rows_per_part: u32, part_base: u32, row0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

var<workgroup> red: array<vec2<f32>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x * 64u + lid % 64u;
  let lane = lid / 64u;
  let r0 = wid.y * p.rows_per_part;
  let r1 = min(p.rows, r0 + p.rows_per_part);
  var s = vec2<f32>(0.0);
  if (c < p.cols) {
    for (var r = r0 + lane; r < r1; r += 4u) {
      let gv = g[r * p.cols + c];
      s += vec2<f32>(gv * (x[r * p.cols + c] - mean[p.row0 + r]) * rstd[p.row0 + r], gv);
    }
  }
  red[lid] = s;
  workgroupBarrier();
  if (lane == 0u && c < p.cols) {
    let t = red[lid] + red[lid + 64u] + red[lid + 128u] + red[lid + 192u];
    let o = (p.part_base + wid.y) * 2u * p.cols;
    part[o + c] = t.x;
    part[o + p.cols + c] = t.y;
  }
}
