// groupnorm_fwd_combine: merges the per-channel statistics of
// groupnorm_fwd_stats into per-group mean and rstd. Every channel holds S
// values, so the group mean is the mean of the channel means and
//   M2 = sum_c (M2_c + S * (mean_c - mean)^2),  var = M2 / (cg * S),
//   rstd = 1 / sqrt(var + eps)
// (Chan et al.'s parallel variance, exact for any split).
// Thread t owns group t = n * G + g, whose channels are the cg consecutive
// rows from t * cg on.
// Bindings: 0 params {groups (N*G), cg, S, eps}; 1 st [N*C, 2];
//   2 mean [N*G] (read_write); 3 rstd [N*G] (read_write).
// Dispatch: Grid1D(N*G, 64).
struct P { groups: u32, cg: u32, s: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> st: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * 64u;
  if (t >= p.groups) { return; }
  let r0 = t * p.cg;
  var mu = 0.0;
  for (var c = 0u; c < p.cg; c++) {
    mu += st[2u * (r0 + c)];
  }
  mu /= f32(p.cg);
  var m2 = 0.0;
  let s = f32(p.s);
  for (var c = 0u; c < p.cg; c++) {
    let d = st[2u * (r0 + c)] - mu;
    m2 += st[2u * (r0 + c) + 1u] + s * d * d;
  }
  mean[t] = mu;
  rstd[t] = inverseSqrt(m2 / (f32(p.cg) * s) + p.eps);
}
