// mse_bwd: gradient of L = mean((pred - tgt)^2) for one input:
//   dpred = coef * g * (pred - tgt),  coef = 2/N;  dtarget: coef = -2/N.
// g is the one-element gradient of L. The dispatch covers one window of
// pred, tgt and dx (same window in all three).
// Bindings: 0 params {n, coef}; 1 g [1]; 2 pred [n]; 3 tgt (target) [n];
// 4 dx [n] (read_write).
// Dispatch: Grid1D(n, 256).
struct P { n: u32, coef: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> pred: array<f32>;
@group(0) @binding(3) var<storage, read> tgt: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  dx[i] = p.coef * g[0] * (pred[i] - tgt[i]);
}
