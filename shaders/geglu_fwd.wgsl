// geglu_fwd: diffusers GEGLU after its projection. x [rows, 2F] splits in
// the last dimension into h = x[:, :F] (first half) and gate = x[:, F:];
// out [rows, F] = h * gelu(gate), exact erf GELU (gelu_f from erf_lib.wgsl,
// included below).
// The dispatch covers output elements [obase, obase + n); out is bound as
// exactly that window; x is bound from global element x_start on (whole
// rows covering the window, see op_geglu.go).
// Bindings: 0 params {n, obase, f, x_start}; 1 x [rows, 2F] span;
// 2 out [n] window (read_write).
// Dispatch: Grid1D(n, 256).
//#include "erf_lib.wgsl"

struct P { n: u32, obase: u32, f: u32, x_start: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let o = p.obase + i;
  let row = o / p.f;
  let c = o % p.f;
  let hi = row * 2u * p.f + c - p.x_start;
  out[i] = x[hi] * gelu_f(x[hi + p.f]);
}
