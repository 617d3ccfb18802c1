// geglu_bwd: gradient of out = h * gelu(gate) (geglu_fwd.wgsl) with respect
// to x = [h | gate] [rows, 2F]:
//   dh    = g * gelu(gate)
//   dgate = g * h * gelu'(gate)
// Thread j owns dx element dbase + j (global). dx is bound as exactly the
// window [dbase, dbase + n); x and g are bound from global elements
// x_start and g_start on (the whole rows the window touches).
// gelu_f / dgelu_f come from erf_lib.wgsl, included below.
// Bindings: 0 params {n, dbase, f, x_start, g_start}; 1 g [rows, F] span;
// 2 x [rows, 2F] span; 3 dx [n] window (read_write).
// Dispatch: Grid1D(n, 256).
//#include "erf_lib.wgsl"

struct P { n: u32, dbase: u32, f: u32, x_start: u32, g_start: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x + gid.y * nwg.x * 256u;
  if (j >= p.n) { return; }
  let d = p.dbase + j;
  let w = 2u * p.f;
  let row = d / w;
  let c = d % w;
  let cc = c % p.f;
  let hi = row * w + cc - p.x_start;
  let gate = x[hi + p.f];
  let gv = g[row * p.f + cc - p.g_start];
  if (c < p.f) {
    dx[j] = gv * gelu_f(gate);
  } else {
    dx[j] = gv * x[hi] * dgelu_f(gate);
  }
}
