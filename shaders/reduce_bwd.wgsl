// reduce_bwd: gradient of a sum/mean over axes: dx[i] = scale * g[o(i)],
// broadcasting g back over the reduced dimensions.
// dims are x's canonical (merged) dimensions, rank <= 8; gs are g's strides
// along them (0 along reduced dimensions). Thread i owns dx element
// base + i (global); dx is bound as exactly the window from base, g whole.
// Bindings: 0 params; 1 g [K]; 2 dx [n] window (read_write).
// Dispatch: Grid1D(n, 256).
struct P {
  n: u32, base: u32, rank: u32, scale: f32,
  dims: array<vec4<u32>, 2>,
  gs: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var rem = p.base + i;
  var o = 0u;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let du = u32(d);
    let dim = p.dims[du / 4u][du % 4u];
    o += (rem % dim) * p.gs[du / 4u][du % 4u];
    rem = rem / dim;
  }
  dx[i] = p.scale * g[o];
}
