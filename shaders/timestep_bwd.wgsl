// timestep_bwd: d/dt of timestep_fwd.wgsl, summed over the row:
//   dt[n] = sum_j freq_j * (g[n, sin_col(j)] * cos(arg_j) - g[n, cos_col(j)] * sin(arg_j))
// with arg_j = t[n] * freq_j, reduced by 2*pi as in the forward;
// sin_col(j) = j and cos_col(j) = half + j, swapped when flip_sin_to_cos.
// The zero pad column of an odd dim contributes nothing. One thread per
// row loops over its half frequencies (rows are few: the batch).
// Bindings: 0 params {n = N, dim, half, flip, shift, neg_log_p}; 1 g [N, dim];
// 2 t [N]; 3 dt [N] (read_write).
// Dispatch: Grid1D(N, 64).
struct P { n: u32, dim: u32, half: u32, flip: u32, shift: f32, neg_log_p: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read_write> dt: array<f32>;

fn reduce_2pi(a: f32) -> f32 {
  let k = round(a * 0.15915494309189535);
  return ((a - k * 6.28125) - k * 0.0019354820251464844) - k * -1.748455531e-07;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * 64u;
  if (row >= p.n) { return; }
  let tv = t[row];
  var acc = 0.0;
  var sc = 0u;
  var cc = p.half;
  if (p.flip != 0u) { sc = p.half; cc = 0u; }
  let base = row * p.dim;
  for (var j = 0u; j < p.half; j++) {
    let freq = exp((p.neg_log_p * f32(j)) / (f32(p.half) - p.shift));
    let r = reduce_2pi(tv * freq);
    acc += freq * (g[base + sc + j] * cos(r) - g[base + cc + j] * sin(r));
  }
  dt[row] = acc;
}
