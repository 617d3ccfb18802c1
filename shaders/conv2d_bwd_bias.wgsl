// conv2d_bwd_bias: db[co] = sum over n, oh, ow of g[n, co, oh, ow], the
// bias gradient of conv2d.
// One dispatch covers images [0, nb) of the g window and output channels
// co0 + [0, m); g element (n, co, pix) is at g_off + n*g_img + co*howo + pix
// (co local to the block). Workgroup co sums its channel with 256 threads
// and a tree reduction.
// flags: bit 1 accumulates into db (later image blocks).
// Bindings: 0 params; 1 g; 2 db [Cout] (read_write).
// Dispatch: (m, 1, 1).
struct P {
  m: u32, nb: u32, howo: u32, co0: u32,
  g_off: u32, g_img: u32, flags: u32, _p0: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let co = wid.x;
  var s = 0.0;
  for (var n = 0u; n < p.nb; n++) {
    let base = p.g_off + n * p.g_img + co * p.howo;
    for (var i = lid.x; i < p.howo; i += 256u) {
      s += g[base + i];
    }
  }
  part[lid.x] = s;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h /= 2u) {
    if (lid.x < h) { part[lid.x] += part[lid.x + h]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    var r = part[0];
    if ((p.flags & 2u) != 0u) { r += db[p.co0 + co]; }
    db[p.co0 + co] = r;
  }
}
