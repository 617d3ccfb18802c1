// f16_pack: f32 x to IEEE binary16 values packed two per u32 word (value 2w
// in the low half of word w; an odd count leaves the last high half 0), the
// weight storage format (f16.go). A storage conversion, not an op of the
// graph. WGSL leaves the rounding direction to the implementation and the
// result of values beyond the f16 range (|x| > 65504) indeterminate.
// The dispatch covers one window, as in f16_unpack.wgsl.
// Bindings: 0 params {n, words}; 1 x [n]; 2 packed [ceil(n/2)] u32
// (read_write).
// Dispatch: Grid1D(words, 256).
struct P { n: u32, words: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> packed: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = gid.x + gid.y * nwg.x * 256u;
  if (w >= p.words) { return; }
  var hi = 0.0;
  if (2u * w + 1u < p.n) { hi = x[2u * w + 1u]; }
  packed[w] = pack2x16float(vec2<f32>(x[2u * w], hi));
}
