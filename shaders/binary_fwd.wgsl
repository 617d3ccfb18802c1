// binary_fwd: out = a (op) b with NumPy broadcasting; op 0 add, 1 sub, 2 mul.
// Shapes are right-aligned to rank <= 8. sa/sb are the operands' strides in
// the output's index space (0 along broadcast dimensions).
// The dispatch may cover a window of the output: thread i writes global
// element base + i; a and b are bound from element a_base / b_base on.
// Bindings: 0 params; 1 a; 2 b; 3 out [n] (read_write).
// Dispatch: Grid1D(n, 256).
struct P {
  n: u32, rank: u32, op: u32, base: u32,
  a_base: u32, b_base: u32, _p0: u32, _p1: u32,
  dims: array<vec4<u32>, 2>,
  sa: array<vec4<u32>, 2>,
  sb: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  var rem = p.base + i;
  var ai = 0u;
  var bi = 0u;
  for (var d = i32(p.rank) - 1; d >= 0; d--) {
    let du = u32(d);
    let dim = p.dims[du / 4u][du % 4u];
    let c = rem % dim;
    rem = rem / dim;
    ai += c * p.sa[du / 4u][du % 4u];
    bi += c * p.sb[du / 4u][du % 4u];
  }
  let x = a[ai - p.a_base];
  let y = b[bi - p.b_base];
  var r: f32;
  switch p.op {
    case 0u: { r = x + y; }
    case 1u: { r = x - y; }
    default: { r = x * y; }
  }
  out[i] = r;
}
