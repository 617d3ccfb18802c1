// permute_fwd: out = x with its dimensions permuted (a materialising
// strided copy). The backward of a permute is the permute of g by the
// inverse permutation, so this one kernel serves both directions.
// The op merges dimensions that stay adjacent and drops size-1 ones
// (op_permute.go); odims are out's merged dimensions (rank <= 8) and istr
// the input stride of each.
// Thread i owns out element base + i (global); out is bound as exactly the
// window from base. x is bound as the window [xbase, xbase + xcount) of its
// elements; a thread writes only if its source lies in that window (an x
// over one binding takes one dispatch per x window).
// Bindings: 0 params; 1 x window; 2 out [n] window (read_write).
// Dispatch: Grid1D(n, 256) per (x window, out window).
struct P {
  n: u32, base: u32, rank: u32, xbase: u32,
  xcount: u32, _p0: u32, _p1: u32, _p2: u32,
  odims: array<vec4<u32>, 2>,
  istr: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var rem = p.base + i;
  var src = 0u;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let du = u32(d);
    let dim = p.odims[du / 4u][du % 4u];
    src += (rem % dim) * p.istr[du / 4u][du % 4u];
    rem = rem / dim;
  }
  if (src >= p.xbase && src - p.xbase < p.xcount) {
    out[i] = x[src - p.xbase];
  }
}
