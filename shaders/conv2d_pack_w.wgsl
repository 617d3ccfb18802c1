// conv2d_pack_w: arranges 3x3 conv weights w [Cout, Cin, 3, 3] for
// conv2d_fwd_direct.wgsl as wp [CP/16, A*9, 16] (tiles of 16 columns, each
// tile's rows contiguous), CP = ct*16 >= cn, zeros in columns c >= cn
// (their outputs are never stored; the zeros keep them finite):
//   forward (flip = 0):  A = Cin, cn = Cout:  wp[c/16][a*9 + t][c%16] = w[c, a, t]
//   input gradient (flip = 1): A = Cout, cn = Cin:  wp[c/16][a*9 + t][c%16] = w[a, c, 8 - t]
// (t = kh*3 + kw; the input gradient of a 3x3 stride-1 pad-1 convolution is
// such a convolution of the output gradient with the weights transposed and
// flipped in both spatial dimensions). In general the source element is
// w[c*sc + a*sa + (flip ? 8 - t : t)].
// Thread i writes vec4 i = (tile*rows + r)*4 + q: columns 16*tile + 4q ..
// + 3 of row r.
// Bindings: 0 params; 1 w; 2 wp (read_write, bound as vec4s).
// Dispatch: Grid1D(ct*rows*4, 64).
struct P { rows: u32, ct: u32, cn: u32, sc: u32, sa: u32, flip: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> wp: array<vec4<f32>>;

fn src(c: u32, a: u32, t: u32) -> f32 {
  return select(0.0, w[min(c, p.cn - 1u) * p.sc + a * p.sa + t], c < p.cn);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.ct * p.rows * 4u) { return; }
  let tile = i / (p.rows * 4u);
  let r = (i / 4u) % p.rows;
  let c = tile * 16u + (i % 4u) * 4u;
  let a = r / 9u;
  let t = select(r % 9u, 8u - r % 9u, p.flip != 0u);
  wp[i] = vec4<f32>(src(c, a, t), src(c + 1u, a, t), src(c + 2u, a, t), src(c + 3u, a, t));
}
