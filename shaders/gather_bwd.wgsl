// gather_bwd: scatter-add of gather_fwd.wgsl's gradient without atomics.
// dx [outer, nd, inner], g [outer, m, inner]:
//   dx[o, j, k] = sum over positions q with ids[q] == j of g[o, q, k].
// csr is the inverse index built on the CPU (op_gather.go): csr[j] ..
// csr[j+1] delimit, within csr[nd+1 ..], the positions q whose id is j, in
// ascending order (so the sum order is fixed: deterministic). Rows no id
// selects get 0. Thread i owns dx element base + i (global); dx is bound as
// exactly the window from base, csr and g whole.
// Bindings: 0 params {n, base, m, inner, nd}; 1 csr [nd + 1 + m] u32;
// 2 g [outer*m*inner]; 3 dx [n] window (read_write).
// Dispatch: Grid1D(n, 256).
struct P { n: u32, base: u32, m: u32, inner: u32, nd: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> csr: array<u32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let gi = p.base + i;
  let k = gi % p.inner;
  let rest = gi / p.inner;
  let j = rest % p.nd;
  let o = rest / p.nd;
  var acc = 0.0;
  let t1 = csr[j + 1u];
  for (var t = csr[j]; t < t1; t++) {
    let q = csr[p.nd + 1u + t];
    acc += g[(o * p.m + q) * p.inner + k];
  }
  dx[i] = acc;
}
