// pad2d_bwd: gradient of zero padding = the crop of g.
//   dx[p, y, x] = g[p, y + top, x + left],  dx [P, H, W], g [P, Ho, Wo].
// Bindings: 0 params {n = P*H*W, h, w, ho, wo, top, left}; 1 g; 2 dx (rw).
// Dispatch: Grid1D(n, 256).
struct P { n: u32, h: u32, w: u32, ho: u32, wo: u32, top: u32, left: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let x = i % p.w;
  let y = (i / p.w) % p.h;
  let plane = i / (p.w * p.h);
  dx[i] = g[plane * p.ho * p.wo + (y + p.top) * p.wo + (x + p.left)];
}
