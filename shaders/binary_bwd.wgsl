// binary_bwd: gradient of out = a (op) b with respect to one operand x,
// summed over the dimensions along which x was broadcast.
//   add: dx = sum g;  sub: da = sum g, db = -sum g;  mul: dx = sum g * other.
// Thread j owns element j of x (global index x_base + j). xdims are x's
// dimensions right-aligned to the output's rank (1 where broadcast); os are
// the other operand's strides in the output's index space. K = out_n / x_n
// output elements map to each element of x.
// Bindings: 0 params; 1 g [out]; 2 other; 3 dx [x window] (read_write).
// Dispatch: Grid1D(n, 256).
struct P {
  n: u32, rank: u32, mode: u32, x_base: u32,
  k: u32, sign: f32, _p0: u32, _p1: u32,
  dims: array<vec4<u32>, 2>,
  xdims: array<vec4<u32>, 2>,
  os: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> other: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn dim_of(d: u32) -> u32 { return p.dims[d / 4u][d % 4u]; }
fn xdim_of(d: u32) -> u32 { return p.xdims[d / 4u][d % 4u]; }

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x + gid.y * nwg.x * 256u;
  if (j >= p.n) { return; }
  var acc = 0.0;
  for (var k = 0u; k < p.k; k++) {
    // Output coordinates: x's own coordinates where x is not broadcast,
    // k's digits where it is.
    var xr = p.x_base + j;
    var kr = k;
    var o = 0u;
    var oi = 0u;
    var stride = 1u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
      let du = u32(d);
      let dim = dim_of(du);
      var c: u32;
      if (xdim_of(du) == 1u && dim != 1u) {
        c = kr % dim;
        kr = kr / dim;
      } else {
        c = xr % dim;
        xr = xr / dim;
      }
      o += c * stride;
      oi += c * p.os[du / 4u][du % 4u];
      stride *= dim;
    }
    if (p.mode == 2u) {
      acc += g[o] * other[oi];
    } else {
      acc += g[o];
    }
  }
  dx[j] = p.sign * acc;
}
