// pad2d_bwd: gradient of zero padding = the crop of g, over a range of planes.
//   dx[p, y, x] = g[p, y + top, x + left],  dx [P, H, W], g [P, Ho, Wo].
// Windows as in pad2d_fwd (g_d, dx_d: where the first plane starts).
// Bindings: 0 params {n = np*H*W, h, w, ho, wo, top, left, g_d, dx_d}; 1 g; 2 dx (rw).
// Dispatch: Grid1D(n, 256).
struct P { n: u32, h: u32, w: u32, ho: u32, wo: u32, top: u32, left: u32, g_d: u32, dx_d: u32 }
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
  dx[p.dx_d + i] = g[p.g_d + plane * p.ho * p.wo + (y + p.top) * p.wo + (x + p.left)];
}
