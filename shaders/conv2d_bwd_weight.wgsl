// conv2d_bwd_weight: dw = dL/dw of out = conv2d(x, w) as an implicit GEMM
// over the output pixels (no im2col buffer is built):
//   C[M, NC] = A[M, K] * B[K, NC],  M = Cout, NC = Cin*KH*KW, K = N*Ho*Wo,
//   A[co, k] = g[n, co, oh, ow],
//   B[k, c]  = x[n, ci, oh*STRIDE - PAD + kh, ow*STRIDE - PAD + kw]  (0 outside the image),
//   k = (n, oh, ow), c = (ci, kh, kw).
// k is split into (n, oh, ow) with a float reciprocal and one integer
// correction (exact for k < 2^24; Go keeps nb*Ho*Wo below that), since
// vector integer division by a runtime value is slow on CPU drivers.
// Go prepends `const KH, KW, KHW (= KH*KW), STRIDE, PAD: u32` (Kernel.Consts;
// this naga has no constant expressions).
//
// One dispatch computes a block (Go splits tensors larger than one binding):
// images [0, nb) of the g and x windows (kdim = nb*Ho*Wo), output channels
// co0 + [0, m), input channels ci0 + [0, ncol/(KH*KW)).
// Addresses (ci, co local to the block, n local to the windows):
//   g:  g_off + n*g_img + co*Ho*Wo + oh*Wo + ow
//   x:  x_off + n*x_img + ci*H*W + ih*W + iw
//   dw: (co0 + co)*wrow + ci0*KH*KW + c          (wrow = Cin*KH*KW)
// flags: bit 1 accumulates into dw (later image blocks).
//
// Tiling as conv2d_fwd.wgsl: 16x16 threads, a 64 (co) x 64 (c) tile, 4x4 per
// thread, K in steps of 16 through workgroup memory.
//
// Bindings: 0 params; 1 g; 2 x; 3 dw (read_write).
// Dispatch: (ceil(ncol / 64), ceil(m / 64), 1).
struct P {
  m: u32, ncol: u32, kdim: u32, wrow: u32,
  ci0: u32, co0: u32, flags: u32, _p0: u32,
  h: u32, w: u32, ho: u32, wo: u32,
  g_off: u32, g_img: u32, x_off: u32, x_img: u32,
  inv_howo: f32, inv_wo: f32, _p1: u32, _p2: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

// Tiles as [16 k][64] f32, stored as [16 k][16] vec4.
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

// divmod returns (a / d, a % d) for a < 2^24, given inv = f32(1/d).
fn divmod(a: u32, d: u32, inv: f32) -> vec2<u32> {
  var q = u32(f32(a) * inv);
  var r = i32(a) - i32(q * d);
  if (r < 0) {
    q -= 1u;
    r += i32(d);
  } else if (r >= i32(d)) {
    q += 1u;
    r -= i32(d);
  }
  return vec2<u32>(q, u32(r));
}

fn store_row(co: u32, col: u32, v: vec4<f32>) {
  if (co >= p.m) { return; }
  for (var c = 0u; c < 4u; c++) {
    let j = col + c;
    if (j >= p.ncol) { return; }
    let o = (p.co0 + co) * p.wrow + p.ci0 * KHW + j;
    var r = v[c];
    if ((p.flags & 2u) != 0u) { r += dw[o]; }
    dw[o] = r;
  }
}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = lid.y * 16u + lid.x;
  let kl = t % 16u;  // the k row this thread loads
  let sl = t / 16u;  // it loads rows/columns sl + 16*i, i < 4
  let row0 = wid.y * 64u;
  let col0 = wid.x * 64u;
  let hw = p.h * p.w;
  let howo = p.ho * p.wo;

  var arow: vec4<u32>; // g offset of each A row (output channel)
  var rok: vec4<bool>;
  var cx: vec4<u32>;   // x offset of each B column's channel
  var ckh: vec4<i32>;  // kernel tap of each B column
  var ckw: vec4<i32>;
  var cok: vec4<bool>;
  for (var i = 0u; i < 4u; i++) {
    let r = row0 + sl + 16u * i;
    rok[i] = r < p.m;
    arow[i] = p.g_off + r * howo;
    let c = col0 + sl + 16u * i;
    let rem = c % KHW;
    cx[i] = p.x_off + (c / KHW) * hw;
    ckh[i] = i32(rem / KW);
    ckw[i] = i32(rem % KW);
    cok[i] = c < p.ncol;
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
    let np = divmod(k, howo, p.inv_howo);
    let hw2 = divmod(np.y, p.wo, p.inv_wo);
    let gk = np.x * p.g_img + np.y;
    let xk = np.x * p.x_img;
    let ih0 = i32(hw2.x * STRIDE) - i32(PAD);
    let iw0 = i32(hw2.y * STRIDE) - i32(PAD);
    for (var i = 0u; i < 4u; i++) {
      var av = 0.0;
      if (kok && rok[i]) { av = g[arow[i] + gk]; }
      ta[slot + 4u * i][lane] = av;
      let ih = ih0 + ckh[i];
      let iw = iw0 + ckw[i];
      var bv = 0.0;
      if (kok && cok[i] && ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
        bv = x[cx[i] + xk + u32(ih) * p.w + u32(iw)];
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
