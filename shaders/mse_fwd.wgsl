// mse_fwd: the elementwise part of MSELoss, sq[i] = (pred[i] - tgt[i])^2;
// op_mse.go then averages sq with reduce_fwd.wgsl. The dispatch covers one
// window; all three bindings are that same window.
// Bindings: 0 params {n}; 1 pred [n]; 2 tgt (target) [n]; 3 sq [n] (read_write).
// Dispatch: Grid1D(n, 256).
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read_write> sq: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let d = pred[i] - tgt[i];
  sq[i] = d * d;
}
