// pad2d_fwd: zero padding of the last two dimensions, over a range of planes.
//   out[p, y, x] = in[p, y - top, x - left] inside, 0 outside,
//   in [P, H, W] (P = N*C), out [P, Ho, Wo], Ho = H + top + bottom, Wo = W + left + right.
// One dispatch covers planes [p0, p0 + np); the bindings are windows that
// start at most 63 elements before the first plane (in_d, out_d say where
// it starts inside them), so tensors larger than one binding are padded in
// pieces.
// Bindings: 0 params {n = np*Ho*Wo, h, w, ho, wo, top, left, in_d, out_d}; 1 in; 2 out (rw).
// Dispatch: Grid1D(n, 256).
struct P { n: u32, h: u32, w: u32, ho: u32, wo: u32, top: u32, left: u32, in_d: u32, out_d: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let x = i % p.wo;
  let y = (i / p.wo) % p.ho;
  let plane = i / (p.wo * p.ho);
  var v = 0.0;
  if (y >= p.top && y < p.top + p.h && x >= p.left && x < p.left + p.w) {
    v = src[p.in_d + plane * p.h * p.w + (y - p.top) * p.w + (x - p.left)];
  }
  dst[p.out_d + i] = v;
}
