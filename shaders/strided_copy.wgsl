// strided_copy: copies a block of rows x cols elements between two tensors
// with their own row strides and offsets:
//   dst[dst_off + r*dst_stride + c] = src[src_off + r*src_stride + c],
//   r < rows, c < cols.
// Concat and Split use it in both directions (gpu/op_concat.go): viewing a
// tensor as [outer, size(dim)*inner], one input's slot of the concatenated
// tensor is a block with the concatenation's row stride.
// Offsets are relative to the bound windows; n = rows*cols.
// Bindings: 0 params; 1 src; 2 dst (read_write).
// Dispatch: Grid1D(n, 256).
struct P { n: u32, cols: u32, src_off: u32, src_stride: u32, dst_off: u32, dst_stride: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= p.n) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  dst[p.dst_off + r * p.dst_stride + c] = src[p.src_off + r * p.src_stride + c];
}
