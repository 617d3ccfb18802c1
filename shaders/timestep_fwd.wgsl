// timestep_fwd: diffusers get_timestep_embedding. For row n (timestep t[n])
// and frequency index j < half = dim / 2:
//   freq_j = exp((-ln(max_period) * j) / (half - downscale_freq_shift))
//   arg    = t[n] * freq_j      (f32, as PyTorch computes it)
//   out[n] = [sin(arg_0..half-1) | cos(arg_0..half-1)], or [cos | sin] when
//            flip_sin_to_cos; an odd dim gets a zero last column.
// sin/cos are only accurate on [-pi, pi] on GPUs, so the argument is first
// reduced by 2*pi in Cody-Waite form (2*pi = C1 + C2 + C3; k*C1 is exact for
// |k| < 2^16 and k*C2 for |k| < 2^12, i.e. |arg| < ~25000).
// Bindings: 0 params {n = N*dim, dim, half, flip, shift, neg_log_p};
// 1 t [N]; 2 out [N, dim] (read_write).
// Dispatch: Grid1D(N*dim, 256).
struct P { n: u32, dim: u32, half: u32, flip: u32, shift: f32, neg_log_p: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> t: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn reduce_2pi(a: f32) -> f32 {
  let k = round(a * 0.15915494309189535);
  return ((a - k * 6.28125) - k * 0.0019354820251464844) - k * -1.748455531e-07;
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let row = i / p.dim;
  let c = i % p.dim;
  if (c >= 2u * p.half) {
    out[i] = 0.0;
    return;
  }
  let first = c < p.half;
  let j = select(c - p.half, c, first);
  let freq = exp((p.neg_log_p * f32(j)) / (f32(p.half) - p.shift));
  let r = reduce_2pi(t[row] * freq);
  // Without flip: first half sin, second cos; with flip the other way.
  if (first == (p.flip != 0u)) {
    out[i] = cos(r);
  } else {
    out[i] = sin(r);
  }
}
