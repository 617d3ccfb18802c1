// adamw: one decoupled-weight-decay Adam step for one parameter tensor
// (PyTorch torch.optim.AdamW semantics):
//   g  = grad * clip[ci]                (clip[ci] = global-norm clip factor, 1 if off)
//   p  = p * (1 - lr * wd)
//   m  = b1 * m + (1 - b1) * g
//   v  = b2 * v + (1 - b2) * g^2
//   p  = p - lr * (m / bc1) / (sqrt(v / bc2) + eps)
// bc1 = 1 - b1^t and bc2 = 1 - b2^t are computed on the CPU.
// Bindings: 0 params; 1 grad [n]; 2 clip [> ci] (the gradnorm accumulator); 3 p [n] rw; 4 m [n] rw; 5 v [n] rw.
// Dispatch: Grid1D(n, 256).
struct P { n: u32, lr: f32, b1: f32, b2: f32, eps: f32, wd: f32, bc1: f32, bc2: f32, ci: u32 }
@group(0) @binding(0) var<uniform> pr: P;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read> clip: array<f32>;
@group(0) @binding(3) var<storage, read_write> p: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= pr.n) { return; }
  let g = grad[i] * clip[pr.ci];
  var w = p[i] * (1.0 - pr.lr * pr.wd);
  let mi = pr.b1 * m[i] + (1.0 - pr.b1) * g;
  let vi = pr.b2 * v[i] + (1.0 - pr.b2) * g * g;
  m[i] = mi;
  v[i] = vi;
  w -= pr.lr * (mi / pr.bc1) / (sqrt(vi / pr.bc2) + pr.eps);
  p[i] = w;
}
