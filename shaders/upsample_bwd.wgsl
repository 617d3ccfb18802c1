// upsample_bwd: gradient of nearest-neighbour 2x upsampling: each dx element
// sums its 2x2 block of g. g [P, 2H, 2W] -> dx [P, H, W] (P = N*C).
// One dispatch covers whole planes: thread i writes dx element x_off + i of
// the dx window and reads the g window from o_off on.
// Bindings: 0 params; 1 g; 2 dx (read_write).
// Dispatch: Grid1D(n, 256), n = planes * H*W.
struct P { n: u32, h: u32, w: u32, x_off: u32, o_off: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let hw = p.h * p.w;
  let plane = i / hw;
  let y = (i % hw) / p.w;
  let xx = i % p.w;
  let w2 = 2u * p.w;
  let o = p.o_off + plane * 4u * hw + 2u * y * w2 + 2u * xx;
  dx[p.x_off + i] = g[o] + g[o + 1u] + g[o + w2] + g[o + w2 + 1u];
}
