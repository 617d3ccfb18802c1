// matmul_bwd: the one backward kernel of the matmul family that is not a
// GEMM: Linear's bias gradient, the column sums of g [R, N] over its rows.
// (MatMul's and Linear's input and weight gradients are GEMMs and run
// through matmul_fwd.wgsl with other transpose flags; see op_matmul.go.)
//
// Entry colsum: partial column sums over blocks of `block` rows: thread
// (n, b) writes out[o0 + b * N + n] = sum of g[g0 + r * N + n] for rows r in
// [b * block, min(R, (b + 1) * block)). Repeated until one row is left.
// Bindings: 0 params; 1 g [R, N]; 2 out [ceil(R / block), N] (read_write).
// Dispatch: (ceil(N / 64), ceil(R / block), 1).
struct P { R: u32, N: u32, block: u32, g0: u32, o0: u32, _p0: u32, _p1: u32, _p2: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn colsum(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  if (n >= p.N) { return; }
  let r0 = gid.y * p.block;
  let r1 = min(p.R, r0 + p.block);
  var s = 0.0;
  for (var r = r0; r < r1; r++) {
    s += g[p.g0 + r * p.N + n];
  }
  out[p.o0 + gid.y * p.N + n] = s;
}
