// layernorm_bwd_sum: adds the partial column sums of layernorm_bwd_params:
//   dw[c] = sum_pi part[pi, 0, c];  db[c] = sum_pi part[pi, 1, c].
// Bindings: 0 params {cols, parts}; 1 part [parts, 2, cols];
//   2 dw [cols] (read_write); 3 db [cols] (read_write).
// Dispatch: Grid1D(cols, 64).
struct P { cols: u32, parts: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let c = gid.x + gid.y * nwg.x * 64u;
  if (c >= p.cols) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var i = 0u; i < p.parts; i++) {
    sw += part[i * 2u * p.cols + c];
    sb += part[i * 2u * p.cols + p.cols + c];
  }
  dw[c] = sw;
  db[c] = sb;
}
