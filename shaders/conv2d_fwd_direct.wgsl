// conv2d_fwd_direct: out = conv2d(x, w) + bias for 3x3 kernels, stride 1,
// pad 1 (Ho = H, Wo = W), register-blocked for CPU adapters (lavapipe) like
// matmul_fwd.wgsl's "direct" entry. Same results as conv2d_fwd.wgsl.
//
// On llvmpipe every load whose address is not a compile-time constant is a
// loop over the SIMD lanes, while FMAs are cheap, so what counts is FMAs per
// load. Each invocation owns 16 output channels x 16 consecutive pixels of
// one output row, in sixteen mat4x4 accumulators, and reads x and the
// weights straight from storage (no workgroup memory, no barriers). Per
// (input channel ci, kernel row kh) it loads the 18 input pixels
// x[ci, oh + kh - 1, ow0 - 1 .. ow0 + 16] once (6 vec4 loads, or 18 scalar
// loads when W is not a multiple of 4) and shares them between the three
// kernel columns kw, whose 16 weights each are 4 vec4 loads: 18 loads for
// 3 x 16 x 16 = 768 FMAs (matmul_fwd.wgsl's direct entry: 32 per 1024).
//
// The weights come pre-arranged (conv2d_pack_w.wgsl) as wp
// [CP/16, Cin*9, 16], CP = Cout rounded up to 16 (zeros past Cout, whose
// outputs are never stored): the
// weights of one tile of 16 output channels are contiguous, and so are the
// 12 vec4s one (ci, kh) step reads, so an invocation streams through them:
//   wp[cb][(ci*3 + kh)*3 + kw][j] = w[16*cb + j, ci, kh, kw].
// The same kernel computes the input gradient of such a convolution (a
// 3x3, stride 1, pad 1 convolution of g with the flipped, transposed
// weights, which conv2d_pack_w.wgsl arranges the same way).
//
// Go prepends (Kernel.Consts): XVEC: bool, W and the x window's start are
// multiples of 4 floats, so an input row is read as vec4s.
//
// One dispatch computes a block of the problem (Go splits tensors larger
// than one binding, as for conv2d_fwd.wgsl): images [0, nb) of the x and
// out windows, output channels co0 + [0, m), input channels ci0 + [0, cin).
// Pixel blocks (n, oh, ow0 = 16*s) are numbered b = (n*H + oh)*segs + s,
// segs = ceil(W/16), npb = nb*H*segs of them; invocation t owns block
// b = t % npb and output channels co0 + 16*j + [0, 16), j = t / npb (so a
// workgroup's 8 invocations share their weights unless npb is small, and
// small planes still fill the SIMD lanes).
// Addresses (ci, co local to the block, n local to the windows):
//   x:   x_off + n*x_img + ci*H*W + ih*W + iw   (floats)
//   out: o_off + n*o_img + co*H*W + oh*W + ow
//   wp:  (((co0 + co)/16*krows + (ci0 + ci)*9 + kh*3 + kw)*4 + (co % 16)/4  (vec4s;
//        co0 % 16 == 0, krows = 9 * all input channels)
//   bias: co0 + co
// flags: bit 0 adds bias, bit 1 accumulates into out (later input-channel
// blocks). Pixels outside x read as zero: rows outside [0, H) and columns
// outside [0, W) are loaded from a clamped address and replaced by zeros.
// Pixels past W and channels past m are not stored.
//
// Bindings: 0 params; 1 x (read as vec4; bound in whole vec4s); 2 wp;
//           3 bias (any buffer when flags bit 0 is clear); 4 out (read_write).
// Dispatch: Grid1D(npb * ceil(m / 16), 8), workgroup 8 (one SIMD group on
// llvmpipe).
struct P {
  m: u32, cin: u32, krows: u32, ci0: u32,
  co0: u32, npb: u32, segs: u32, flags: u32,
  h: u32, w: u32, x_off: u32, x_img: u32,
  o_off: u32, o_img: u32, _p0: u32, _p1: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wp: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Row holds input columns ow0 - 4 .. ow0 + 19 of one input row: v0 is
// columns ow0 - 4 .. ow0 - 1 (only .w is used), v1..v4 the block's own 16,
// v5 columns ow0 + 16 .. (only .x is used). Zeros outside the image.
struct Row { v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>, v4: vec4<f32>, v5: vec4<f32> }

// ld4 returns x columns col..col+3 of the row starting at float rb (a
// multiple of 4), or zeros when !ok; col is clamped into [0, W - 4].
fn ld4(rb: u32, col: i32, ok: bool) -> vec4<f32> {
  let c = u32(clamp(col, 0, i32(p.w) - 4));
  return select(vec4<f32>(0.0), x[(rb + c) / 4u], ok);
}

// ld1 returns x column col of the row starting at float rb, or 0 when
// col is outside [0, W) or !ok.
fn ld1(rb: u32, col: i32, ok: bool) -> f32 {
  let e = rb + u32(clamp(col, 0, i32(p.w) - 1));
  return select(0.0, x[e / 4u][e % 4u], ok && col >= 0 && col < i32(p.w));
}

// load_row returns the input row starting at float rb for the block at ow0
// (ok: the row lies inside the image).
fn load_row(rb: u32, ow0: i32, ok: bool) -> Row {
  var r: Row;
  let w = i32(p.w);
  if (XVEC) {
    // W % 4 == 0, so each vec4 lies wholly inside or outside the row.
    r.v0 = ld4(rb, ow0 - 4, ok && ow0 > 0);
    r.v1 = ld4(rb, ow0, ok);
    r.v2 = ld4(rb, ow0 + 4, ok && ow0 + 4 < w);
    r.v3 = ld4(rb, ow0 + 8, ok && ow0 + 8 < w);
    r.v4 = ld4(rb, ow0 + 12, ok && ow0 + 12 < w);
    r.v5 = ld4(rb, ow0 + 16, ok && ow0 + 16 < w);
  } else {
    r.v0 = vec4<f32>(0.0, 0.0, 0.0, ld1(rb, ow0 - 1, ok));
    r.v1 = vec4<f32>(ld1(rb, ow0, ok), ld1(rb, ow0 + 1, ok), ld1(rb, ow0 + 2, ok), ld1(rb, ow0 + 3, ok));
    r.v2 = vec4<f32>(ld1(rb, ow0 + 4, ok), ld1(rb, ow0 + 5, ok), ld1(rb, ow0 + 6, ok), ld1(rb, ow0 + 7, ok));
    r.v3 = vec4<f32>(ld1(rb, ow0 + 8, ok), ld1(rb, ow0 + 9, ok), ld1(rb, ow0 + 10, ok), ld1(rb, ow0 + 11, ok));
    r.v4 = vec4<f32>(ld1(rb, ow0 + 12, ok), ld1(rb, ow0 + 13, ok), ld1(rb, ow0 + 14, ok), ld1(rb, ow0 + 15, ok));
    r.v5 = vec4<f32>(ld1(rb, ow0 + 16, ok), 0.0, 0.0, 0.0);
  }
  return r;
}

// outer returns the outer product: column r is w * x[r].
fn outer(w: vec4<f32>, x4: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(w * x4.x, w * x4.y, w * x4.z, w * x4.w);
}

// Accumulators: c[4*cg + pg] column r holds output channels 4*cg .. +3 at
// pixel ow0 + 4*pg + r. Constant indices only, so the compiler keeps them
// out of lane loops.
struct Acc { c: array<mat4x4<f32>, 16> }

// taps adds one kernel column's products: w0..w3 are the weights of output
// channels 0-3 .. 12-15, q0..q3 the input pixels under output pixels
// 0-3 .. 12-15 for that column.
fn taps(t: ptr<function, Acc>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>,
        q0: vec4<f32>, q1: vec4<f32>, q2: vec4<f32>, q3: vec4<f32>) {
  (*t).c[0] += outer(w0, q0);
  (*t).c[1] += outer(w0, q1);
  (*t).c[2] += outer(w0, q2);
  (*t).c[3] += outer(w0, q3);
  (*t).c[4] += outer(w1, q0);
  (*t).c[5] += outer(w1, q1);
  (*t).c[6] += outer(w1, q2);
  (*t).c[7] += outer(w1, q3);
  (*t).c[8] += outer(w2, q0);
  (*t).c[9] += outer(w2, q1);
  (*t).c[10] += outer(w2, q2);
  (*t).c[11] += outer(w2, q3);
  (*t).c[12] += outer(w3, q0);
  (*t).c[13] += outer(w3, q1);
  (*t).c[14] += outer(w3, q2);
  (*t).c[15] += outer(w3, q3);
}

fn block(n: u32, oh: u32, ow0: u32, cb: u32) -> Acc {
  var t: Acc;
  let hw = p.h * p.w;
  // rb: the plane of input channel ci; ih: input row oh + kh - 1.
  var rb = p.x_off + n * p.x_img;
  var ih = i32(oh) - 1;
  var kh = 0u;
  // Weight rows (ci0 + ci)*9 + kh*3 (+ kw) of tile cb: three rows of 4
  // vec4s per (ci, kh) step.
  var wb = (cb * p.krows + p.ci0 * 9u) * 4u;
  // One flat runtime loop over (ci, kh): no unrolling (compile time on
  // CPU drivers) and no nested loop masks.
  for (var it = p.cin * 3u; it > 0u; it--) {
    let ok = ih >= 0 && ih < i32(p.h);
    let r = load_row(rb + u32(clamp(ih, 0, i32(p.h) - 1)) * p.w, i32(ow0), ok);
    // kw = 0: output pixel j reads input column ow0 + j - 1.
    taps(&t, wp[wb], wp[wb + 1u], wp[wb + 2u], wp[wb + 3u],
         vec4<f32>(r.v0.w, r.v1.xyz), vec4<f32>(r.v1.w, r.v2.xyz), vec4<f32>(r.v2.w, r.v3.xyz), vec4<f32>(r.v3.w, r.v4.xyz));
    // kw = 1: column ow0 + j.
    let wb1 = wb + 4u;
    taps(&t, wp[wb1], wp[wb1 + 1u], wp[wb1 + 2u], wp[wb1 + 3u], r.v1, r.v2, r.v3, r.v4);
    // kw = 2: column ow0 + j + 1.
    let wb2 = wb + 8u;
    taps(&t, wp[wb2], wp[wb2 + 1u], wp[wb2 + 2u], wp[wb2 + 3u],
         vec4<f32>(r.v1.yzw, r.v2.x), vec4<f32>(r.v2.yzw, r.v3.x), vec4<f32>(r.v3.yzw, r.v4.x), vec4<f32>(r.v4.yzw, r.v5.x));
    wb += 12u;
    kh++;
    let wrap = kh == 3u;
    kh = select(kh, 0u, wrap);
    ih = select(ih + 1, i32(oh) - 1, wrap);
    rb = select(rb, rb + hw, wrap);
  }
  return t;
}

// put writes output channel co (block-local; cb for the bias), pixels
// ow .. ow + 3 at out address o .. o + 3: v plus the bias (flags bit 0)
// plus the old value (bit 1); channels past m and pixels past W are
// skipped.
fn put(o: u32, co: u32, ow: u32, cb: u32, v: vec4<f32>) {
  if (co >= p.m) { return; }
  var r = v;
  if ((p.flags & 1u) != 0u) { r += vec4<f32>(bias[cb]); }
  let np = min(4u, p.w - min(ow, p.w));
  for (var j = 0u; j < np; j++) {
    var y = r[j];
    if ((p.flags & 2u) != 0u) { y += out[o + j]; }
    out[o + j] = y;
  }
}

// put_block writes accumulator m (column r: pixel ow + r, rows: channels
// co .. co + 3) at out address o for channel co, pixel ow.
fn put_block(o: u32, co: u32, ow: u32, cb: u32, m: mat4x4<f32>) {
  let u = transpose(m); // u[i]: channel co + i, 4 pixels
  let hw = p.h * p.w;
  put(o + co * hw, co, ow, cb, u[0]);
  put(o + (co + 1u) * hw, co + 1u, ow, cb + 1u, u[1]);
  put(o + (co + 2u) * hw, co + 2u, ow, cb + 2u, u[2]);
  put(o + (co + 3u) * hw, co + 3u, ow, cb + 3u, u[3]);
}

@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let inv = gid.x + gid.y * nwg.x * 8u;
  let b = inv % p.npb;
  let co = (inv / p.npb) * 16u; // block-local
  if (co >= p.m) { return; }
  let s = b % p.segs;
  let row = b / p.segs;
  let n = row / p.h;
  let oh = row % p.h;
  let ow0 = s * 16u;
  var t = block(n, oh, ow0, (p.co0 + co) / 16u);
  // Epilogue with constant accumulator indices only: a runtime loop that
  // indexed the accumulators made lavapipe's JIT of this shader take ~9 s
  // instead of ~2 s (cold cache, contended 2-core machine).
  let ob = p.o_off + n * p.o_img + oh * p.w + ow0;
  let cg = p.co0 + co; // first channel, for the bias
  put_block(ob, co, ow0, cg, t.c[0]);
  put_block(ob + 4u, co, ow0 + 4u, cg, t.c[1]);
  put_block(ob + 8u, co, ow0 + 8u, cg, t.c[2]);
  put_block(ob + 12u, co, ow0 + 12u, cg, t.c[3]);
  put_block(ob, co + 4u, ow0, cg + 4u, t.c[4]);
  put_block(ob + 4u, co + 4u, ow0 + 4u, cg + 4u, t.c[5]);
  put_block(ob + 8u, co + 4u, ow0 + 8u, cg + 4u, t.c[6]);
  put_block(ob + 12u, co + 4u, ow0 + 12u, cg + 4u, t.c[7]);
  put_block(ob, co + 8u, ow0, cg + 8u, t.c[8]);
  put_block(ob + 4u, co + 8u, ow0 + 4u, cg + 8u, t.c[9]);
  put_block(ob + 8u, co + 8u, ow0 + 8u, cg + 8u, t.c[10]);
  put_block(ob + 12u, co + 8u, ow0 + 12u, cg + 8u, t.c[11]);
  put_block(ob, co + 12u, ow0, cg + 12u, t.c[12]);
  put_block(ob + 4u, co + 12u, ow0 + 4u, cg + 12u, t.c[13]);
  put_block(ob + 8u, co + 12u, ow0 + 8u, cg + 12u, t.c[14]);
  put_block(ob + 12u, co + 12u, ow0 + 12u, cg + 12u, t.c[15]);
}
