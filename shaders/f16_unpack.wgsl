// f16_unpack: f32 out from IEEE binary16 values packed two per u32 word
// (value 2w in the low half of word w, 2w + 1 in the high half), the weight
// storage format (f16.go). A storage conversion, not an op of the graph.
// The dispatch covers one window: out from an element that is a multiple of
// 128, packed from the matching word (a multiple of 64 words = 256 bytes).
// Bindings: 0 params {n, words}; 1 packed [ceil(n/2)] u32; 2 out [n]
// (read_write).
// Dispatch: Grid1D(words, 256).
struct P { n: u32, words: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = gid.x + gid.y * nwg.x * 256u;
  if (w >= p.words) { return; }
  let v = unpack2x16float(packed[w]);
  out[2u * w] = v.x;
  if (2u * w + 1u < p.n) { out[2u * w + 1u] = v.y; }
}
