// groupnorm_bwd_combine: from the per-channel sums ab[n, c] = (A, B) =
// (sum g, sum g * xhat) of groupnorm_bwd_reduce:
//   threads t < C:        dw[t] = sum_n B[n, t],  db[t] = sum_n A[n, t];
//   threads t = C + ng:   s[ng] = (sum_{c in g} w[c] A[n, c],
//                                  sum_{c in g} w[c] B[n, c])
// (w = 1 without weight: flags bit 0 clear, w a dummy not read).
// Bindings: 0 params {N, C, cg, flags}; 1 ab [N, C, 2]; 2 w [C];
//   3 dw [C] (read_write); 4 db [C] (read_write); 5 s [N*G, 2] (read_write).
// Dispatch: Grid1D(C + N*G, 64).
struct P { n: u32, c: u32, cg: u32, flags: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> ab: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
@group(0) @binding(4) var<storage, read_write> db: array<f32>;
@group(0) @binding(5) var<storage, read_write> s: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * 64u;
  let groups = p.n * (p.c / p.cg);
  if (t < p.c) {
    var sa = 0.0;
    var sb = 0.0;
    for (var n = 0u; n < p.n; n++) {
      sa += ab[2u * (n * p.c + t)];
      sb += ab[2u * (n * p.c + t) + 1u];
    }
    dw[t] = sb;
    db[t] = sa;
  } else if (t < p.c + groups) {
    let ng = t - p.c;
    var s1 = 0.0;
    var s2 = 0.0;
    for (var k = 0u; k < p.cg; k++) {
      let row = ng * p.cg + k; // n * C + c
      var wc = 1.0;
      if ((p.flags & 1u) != 0u) { wc = w[row % p.c]; }
      s1 += wc * ab[2u * row];
      s2 += wc * ab[2u * row + 1u];
    }
    s[2u * ng] = s1;
    s[2u * ng + 1u] = s2;
  }
}
