// conv2d_bwd_input: dx = dL/dx of out = conv2d(x, w), a transposed
// convolution of g = dL/dout, as an implicit GEMM (no buffer is built):
//   C[M, NC] = A[M, K] * B[K, NC],  M = Cin, NC = N*H*W, K = Cout*KH*KW,
//   A[ci, k] = w[co, ci, kh, kw],
//   B[k, j]  = g[n, co, oh, ow] where ih = oh*STRIDE - PAD + kh and
//              iw = ow*STRIDE - PAD + kw (0 when no such oh/ow exists),
//   k = (co, kh, kw), j = (n, ih, iw).
// Each dx element is thus the sum over every output it contributed to. With
// STRIDE 2, three in four B entries are structural zeros (not skipped).
// Go prepends `const KH, KW, KHW (= KH*KW), STRIDE, PAD: u32` (Kernel.Consts;
// this naga has no constant expressions).
//
// One dispatch computes a block (Go splits tensors larger than one binding):
// images [0, nb) of the g and dx windows, input channels ci0 + [0, m),
// output channels co0 + [0, kdim/(KH*KW)), columns j0 + [0, 64*groups.x).
// Addresses (ci, co local to the block, n local to the windows):
//   g:  g_off + n*g_img + co*Ho*Wo + oh*Wo + ow
//   dx: x_off + n*x_img + ci*H*W + ih*W + iw
//   w:  (co0 + co)*wrow + (ci0 + ci)*KH*KW + kh*KW + kw   (wrow = Cin*KH*KW)
// flags: bit 1 accumulates into dx (later output-channel blocks).
//
// Tiling as conv2d_fwd.wgsl: 16x16 threads, a 64 (ci) x 64 (j) tile, 4x4 per
// thread, K in steps of 16 through workgroup memory.
//
// Bindings: 0 params; 1 g; 2 w; 3 dx (read_write).
// Dispatch: (ceil(columns / 64), ceil(m / 64), 1), columns <= 65535*64 per dispatch.
struct P {
  m: u32, ncol: u32, kdim: u32, wrow: u32,
  ci0: u32, co0: u32, j0: u32, flags: u32,
  h: u32, w: u32, ho: u32, wo: u32,
  g_off: u32, g_img: u32, x_off: u32, x_img: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// Tiles as [16 k][64] f32, stored as [16 k][16] vec4.
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

fn store_row(ci: u32, col: u32, v: vec4<f32>) {
  if (ci >= p.m) { return; }
  let hw = p.h * p.w;
  for (var c = 0u; c < 4u; c++) {
    let j = col + c;
    if (j >= p.ncol) { return; }
    let o = p.x_off + (j / hw) * p.x_img + ci * hw + j % hw;
    var r = v[c];
    if ((p.flags & 2u) != 0u) { r += dx[o]; }
    dx[o] = r;
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

  var arow: vec4<u32>;  // w offset of each A row (input channel)
  var rok: vec4<bool>;
  var cbase: vec4<u32>; // g offset of each B column's image
  var cth: vec4<i32>;   // ih + PAD, iw + PAD of each B column
  var ctw: vec4<i32>;
  var cok: vec4<bool>;
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + sl + 16u * i;
    rok[i] = r < p.m;
    arow[i] = (p.ci0 + r) * KHW;
    let j = col0 + sl + 16u * i;
    let pix = j % hw;
    cbase[i] = p.g_off + (j / hw) * p.g_img;
    cth[i] = i32(pix / p.w + PAD);
    ctw[i] = i32(pix % p.w + PAD);
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
    let co = k / KHW;
    let rem = k % KHW;
    let kh = i32(rem / KW);
    let kw = i32(rem % KW);
    let wk = (p.co0 + co) * p.wrow + rem;
    let gk = co * howo;
    for (var i = 0u; i < 4u; i++) {
      var av = 0.0;
      if (kok && rok[i]) { av = wt[wk + arow[i]]; }
      ta[slot + 4u * i][lane] = av;
      // oh*STRIDE = ih + PAD - kh must be a non-negative multiple of STRIDE.
      let th = cth[i] - kh;
      let tw = ctw[i] - kw;
      var bv = 0.0;
      if (kok && cok[i] && th >= 0 && tw >= 0) {
        let oh = u32(th) / STRIDE;
        let ow = u32(tw) / STRIDE;
        if (u32(th) % STRIDE == 0u && u32(tw) % STRIDE == 0u && oh < p.ho && ow < p.wo) {
          bv = g[cbase[i] + gk + oh * p.wo + ow];
        }
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
  let ci = row0 + lid.y * 4u;
  let col = col0 + lid.x * 4u;
  store_row(ci, col, acc0);
  store_row(ci + 1u, col, acc1);
  store_row(ci + 2u, col, acc2);
  store_row(ci + 3u, col, acc3);
}
