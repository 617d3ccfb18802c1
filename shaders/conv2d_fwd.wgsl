// conv2d_fwd: out = conv2d(x, w) + bias (PyTorch layouts, no dilation or
// groups) as an implicit GEMM; no im2col buffer is ever built:
//   C[M, NC] = A[M, K] * B[K, NC],  M = Cout, NC = N*Ho*Wo, K = Cin*KH*KW,
//   A[co, k] = w[co, k]              (w [Cout, Cin, KH, KW] is row-major [Cout, K]),
//   B[k, j]  = x[n, ci, oh*STRIDE - PAD + kh, ow*STRIDE - PAD + kw]  (0 outside the image),
//   k = (ci, kh, kw), j = (n, oh, ow).
// Go prepends `const KH, KW, KHW (= KH*KW), STRIDE, PAD: u32` (Kernel.Consts;
// this naga has no constant expressions).
//
// One dispatch computes a block of the problem (Go splits tensors larger than
// one binding): images [0, nb) of the x and out windows, output channels
// co0 + [0, m), input channels ci0 + [0, kdim/(KH*KW)), columns j0 + [0, 64*groups.x).
// Addresses (ci, co local to the block, n local to the windows):
//   x:   x_off + n*x_img + ci*H*W + ih*W + iw
//   out: o_off + n*o_img + co*Ho*Wo + oh*Wo + ow
//   w:   (co0 + co)*wrow + ci0*KH*KW + k        bias: co0 + co
// flags: bit 0 adds bias, bit 1 accumulates into out (later input-channel blocks).
//
// Tiling: a workgroup of 16x16 threads computes a 64 (co) x 64 (j) tile, each
// thread a 4x4 block; K advances 16 at a time through workgroup memory. Every
// thread loads one k row of both tiles (its k decomposition happens once per
// step) at 4 rows of A and 4 columns of B (their index math is hoisted out of
// the K loop); out-of-range rows, columns and k read 0.
//
// Bindings: 0 params; 1 x; 2 w; 3 bias (any buffer when flags bit 0 is clear);
//           4 out (read_write).
// Dispatch: (ceil(columns / 64), ceil(m / 64), 1), columns <= 65535*64 per dispatch.
struct P {
  m: u32, ncol: u32, kdim: u32, wrow: u32,
  ci0: u32, co0: u32, j0: u32, flags: u32,
  h: u32, w: u32, ho: u32, wo: u32,
  x_off: u32, x_img: u32, o_off: u32, o_img: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Tiles as [16 k][64] f32, stored as [16 k][16] vec4.
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

fn store_row(co: u32, col: u32, v: vec4<f32>) {
  if (co >= p.m) { return; }
  let howo = p.ho * p.wo;
  for (var c = 0u; c < 4u; c++) {
    let j = col + c;
    if (j >= p.ncol) { return; }
    let o = p.o_off + (j / howo) * p.o_img + co * howo + j % howo;
    var r = v[c];
    if ((p.flags & 1u) != 0u) { r += bias[p.co0 + co]; }
    if ((p.flags & 2u) != 0u) { r += out[o]; }
    out[o] = r;
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = lid.y * 16u + lid.x;
  let kl = t % 16u;  // the k row this thread loads
  let sl = t / 16u;  // it loads rows/columns sl + 16*i, i < 4
  let row0 = wid.y * 64u;
  let col0 = p.j0 + wid.x * 64u;
  let hw = p.h * p.w;
  let howo = p.ho * p.wo;

  var arow: vec4<u32>;  // w offset of each A row
  var rok: vec4<bool>;
  var cbase: vec4<u32>; // x offset of each B column's image
  var cih: vec4<i32>;   // top-left input pixel of each B column
  var ciw: vec4<i32>;
  var cok: vec4<bool>;
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + sl + 16u * i;
    rok[i] = r < p.m;
    arow[i] = (p.co0 + r) * p.wrow + p.ci0 * KHW;
    let j = col0 + sl + 16u * i;
    let pix = j % howo;
    cbase[i] = p.x_off + (j / howo) * p.x_img;
    cih[i] = i32((pix / p.wo) * STRIDE) - i32(PAD);
    ciw[i] = i32((pix % p.wo) * STRIDE) - i32(PAD);
    cok[i] = j < p.ncol;
  }
  let slot = kl * 16u + sl / 4u;
  let lane = sl % 4u;

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.kdim; k0 += 16u) {
    let k = k0 + kl;
    let kok = k < p.kdim;
    let ci = k / KHW;
    let rem = k % KHW;
    let kh = i32(rem / KW);
    let kw = i32(rem % KW);
    let xk = ci * hw;
    for (var i = 0u; i < 4u; i++) {
      var av = 0.0;
      if (kok && rok[i]) { av = wt[arow[i] + k]; }
      ta[slot + 4u * i][lane] = av;
      let ih = cih[i] + kh;
      let iw = ciw[i] + kw;
      var bv = 0.0;
      if (kok && cok[i] && ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
        bv = x[cbase[i] + xk + u32(ih) * p.w + u32(iw)];
      }
      tb[slot + 4u * i][lane] = bv;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      let a = ta[kk * 16u + lid.y];
      let b = tb[kk * 16u + lid.x];
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();
  }
  let co = row0 + lid.y * 4u;
  let col = col0 + lid.x * 4u;
  store_row(co, col, acc0);
  store_row(co + 1u, col, acc1);
  store_row(co + 2u, col, acc2);
  store_row(co + 3u, col, acc3);
}
