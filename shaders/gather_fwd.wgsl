// gather_fwd: index_select / embedding lookup along one dimension.
// x is viewed as [outer, nd, inner], ids as [m]; out [outer, m, inner]:
//   out[o, q, k] = x[o, ids[q], k].
// Thread i owns out element base + i (global); out is bound as exactly the
// window from base. x is bound as the window [xbase, xbase + xcount) of
// its elements: a thread writes only if its source lies in that window
// (an x larger than one binding takes one dispatch per x window).
// Bindings: 0 params {n, base, m, inner, nd, xbase, xcount}; 1 ids [m] u32;
// 2 x window; 3 out [n] window (read_write).
// Dispatch: Grid1D(n, 256) per (x window, out window).
struct P { n: u32, base: u32, m: u32, inner: u32, nd: u32, xbase: u32, xcount: u32, _p0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let gi = p.base + i;
  let k = gi % p.inner;
  let rest = gi / p.inner;
  let q = rest % p.m;
  let o = rest / p.m;
  let src = (o * p.nd + ids[q]) * p.inner + k;
  if (src >= p.xbase && src - p.xbase < p.xcount) {
    out[i] = x[src - p.xbase];
  }
}
