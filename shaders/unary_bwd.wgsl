// unary_bwd: dx = g * f'(x) for the activation family of unary_fwd.wgsl
// (same op codes):
//   0 SiLU       s (1 + x (1 - s)),            s = sigmoid(x)
//   1 GELU       Phi(x) + x phi(x)
//   2 GELUTanh   0.5 (1 + tanh u) + 0.5 x sech^2(u) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
//   3 QuickGELU  s (1 + 1.702 x (1 - s)),      s = sigmoid(1.702 x)
//   4 Erf        2/sqrt(pi) exp(-x^2)
// Helpers come from erf_lib.wgsl, included below. Window-local indices as
// in unary_fwd.wgsl.
// Bindings: 0 params {n, op}; 1 g [n]; 2 x [n]; 3 dx [n] (read_write).
// Dispatch: Grid1D(n, 256).
//#include "erf_lib.wgsl"

struct P { n: u32, op: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let v = x[i];
  var d: f32;
  switch p.op {
    case 0u: {
      let s = sigmoid_f(v);
      d = s * (1.0 + v * (1.0 - s));
    }
    case 1u: { d = dgelu_f(v); }
    case 2u: {
      let k = 0.7978845608028654;
      let u = k * (v + 0.044715 * v * v * v);
      d = 0.5 * (1.0 + tanh_f(u));
      let s2 = sech2_f(u);
      // s2 underflows to 0 long before x^2 overflows; skip 0 * inf.
      if (s2 > 0.0) { d += 0.5 * v * s2 * k * (1.0 + 3.0 * 0.044715 * v * v); }
    }
    case 3u: {
      let s = sigmoid_f(1.702 * v);
      d = s * (1.0 + 1.702 * v * (1.0 - s));
    }
    case 4u: { d = derf_f(v); }
    default: { d = exp(v); }
  }
  dx[i] = g[i] * d;
}
