// attention_bwd_delta: delta[i] = sum_d dO[i, d] * O[i, d] for every query
// row of attention (the row term of the softmax backward). Thread t owns
// row row0 + t; dO and O are bound from row row0 on, delta whole.
// Bindings: 0 params {rows, d, row0}; 1 g (dO) [rows, D]; 2 o [rows, D];
//   3 delta [all rows] (read_write).
// Dispatch: Grid1D(rows, 64).
struct P { rows: u32, d: u32, row0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> o: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = gid.x + gid.y * nwg.x * 64u;
  if (t >= p.rows) { return; }
  var s = 0.0;
  for (var d = 0u; d < p.d; d++) {
    s += g[t * p.d + d] * o[t * p.d + d];
  }
  delta[p.row0 + t] = s;
}
