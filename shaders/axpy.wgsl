// axpy: y[i] = alpha * x[i] + beta * y[i]  (in place on y).
// With beta = 0 it is a scaled copy; with alpha = beta = 1 an in-place add.
// Bindings: 0 params {n, alpha, beta}; 1 x [n]; 2 y [n] (read_write).
// Dispatch: Grid1D(n, 256).
struct P { n: u32, alpha: f32, beta: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  if (p.beta == 0.0) {
    y[i] = p.alpha * x[i];
  } else {
    y[i] = p.alpha * x[i] + p.beta * y[i];
  }
}
