// unary_fwd: out = f(x) elementwise for the activation family; op selects f:
//   0 SiLU       x * sigmoid(x)
//   1 GELU       0.5 x (1 + erf(x / sqrt 2))             (exact)
//   2 GELUTanh   0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   3 QuickGELU  x * sigmoid(1.702 x)
//   4 Erf        erf(x)
//   5 Exp        e^x
// erf_f, gelu_f, sigmoid_f, tanh_f come from erf_lib.wgsl, included below.
// The dispatch covers one window of the tensor (Engine.chunks): x and out
// are bound as the same window, so indices are window-local.
// Bindings: 0 params {n, op}; 1 x [n]; 2 out [n] (read_write).
// Dispatch: Grid1D(n, 256).
//#include "erf_lib.wgsl"

struct P { n: u32, op: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let v = x[i];
  var r: f32;
  switch p.op {
    case 0u: { r = v * sigmoid_f(v); }
    case 1u: { r = gelu_f(v); }
    case 2u: {
      let u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
      r = 0.5 * v * (1.0 + tanh_f(u));
    }
    case 3u: { r = v * sigmoid_f(1.702 * v); }
    case 4u: { r = erf_f(v); }
    default: { r = exp(v); }
  }
  out[i] = r;
}
