// clamp_bwd: dx = g where lo <= x <= hi, else 0 (PyTorch's convention).
// Bindings: 0 params {n, lo, hi}; 1 x [n]; 2 g [n]; 3 dx [n] (rw). Dispatch: Grid1D(n, 256).
struct P { n: u32, lo: f32, hi: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let v = x[i];
  dx[i] = select(0.0, g[i], v >= p.lo && v <= p.hi);
}
