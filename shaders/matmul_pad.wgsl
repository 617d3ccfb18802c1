// matmul_pad: copies rows of scols floats into rows of dcols floats,
// zero-filling (dcols > scols) or dropping (dcols < scols) the tail. The
// GEMM of op_matmul.go reads every operand as vec4, so operands whose rows
// are not a multiple of 4 floats are padded with it, and a C with such rows
// is computed into a padded temporary and copied back with it. Used in the
// forward and backward passes alike.
// Thread i writes dst[d0 + i]: row i / dcols, column i % dcols, read from
// src[s0 + row * scols + column].
// Bindings: 0 params; 1 src [rows, scols]; 2 dst [rows, dcols] (read_write).
// Dispatch: Grid1D(rows * dcols, 256).
struct P { n: u32, scols: u32, dcols: u32, s0: u32, d0: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let r = i / p.dcols;
  let c = i % p.dcols;
  var v = 0.0;
  if (c < p.scols) { v = src[p.s0 + r * p.scols + c]; }
  dst[p.d0 + i] = v;
}
