// upsample_fwd: nearest-neighbour 2x upsampling of planes [P, H, W]
// (P = N*C): out[p, i, j] = x[p, i/2, j/2]; out is [P, 2H, 2W].
// One dispatch covers whole planes: thread i writes out element o_off + i of
// the out window and reads plane i / (4*H*W) of the x window from x_off on.
// Bindings: 0 params; 1 x; 2 out (read_write).
// Dispatch: Grid1D(n, 256), n = planes * 4*H*W.
struct P { n: u32, h: u32, w: u32, x_off: u32, o_off: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let w2 = 2u * p.w;
  let plane = i / (2u * p.h * w2);
  let rem = i % (2u * p.h * w2);
  let y = rem / w2;
  let xx = rem % w2;
  out[p.o_off + i] = x[p.x_off + (plane * p.h + y / 2u) * p.w + xx / 2u];
}
