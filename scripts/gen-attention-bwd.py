#!/usr/bin/env python3
"""Generates shaders/attention_bwd_dq_direct.wgsl and attention_bwd_dkdv_direct.wgsl
(the committed files are its output with the defaults: python3 scripts/gen-attention-bwd.py shaders).
Usage: gen-attention-bwd.py OUTDIR [NR NK  NKK NQ]  (4-row groups per invocation / per block)."""
import sys

out = sys.argv[1]
NR, NK = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (8, 8)
KK, NQ = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else (8, 8)

COMMON = """struct P { lq: u32, lk: u32, scale: f32, causal: u32, h0: u32, dv: u32, nh: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> g: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> lse: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
"""

def loader(name, buf, n):
    doc = ""
    if name == "ldq":
        doc = ("// ldq returns rows row..row+3 of this slice's q at vec4 d4 as the columns\n"
               "// of a matrix (column r = q[row + r][4*d4 .. 4*d4 + 3]), rows clamped to\n"
               "// the last; ldg, ldk, ldv likewise for dO, k, v.\n")
    return doc + f"""fn {name}(off: u32, row: u32, d4: u32) -> mat4x4<f32> {{
  let last = p.{n} - 1u;
  return mat4x4<f32>({buf}[off + min(row, last) * p.dv + d4], {buf}[off + min(row + 1u, last) * p.dv + d4],
                     {buf}[off + min(row + 2u, last) * p.dv + d4], {buf}[off + min(row + 3u, last) * p.dv + d4]);
}}
"""

def rmw(buf, n):
    return f"""// ld_{buf} is ldq for {buf}, or zeros when zero (the first block: {buf} holds
// garbage then; a select, not a branch); st_{buf} writes column r of b to
// row row + r, clamped like the loads.
fn ld_{buf}(off: u32, row: u32, d4: u32, zero: bool) -> mat4x4<f32> {{
  let last = p.{n} - 1u;
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select({buf}[off + min(row, last) * p.dv + d4], z, zero), select({buf}[off + min(row + 1u, last) * p.dv + d4], z, zero),
                     select({buf}[off + min(row + 2u, last) * p.dv + d4], z, zero), select({buf}[off + min(row + 3u, last) * p.dv + d4], z, zero));
}}
fn st_{buf}(off: u32, row: u32, d4: u32, b: mat4x4<f32>) {{
  let last = p.{n} - 1u;
  {buf}[off + min(row, last) * p.dv + d4] = b[0];
  {buf}[off + min(row + 1u, last) * p.dv + d4] = b[1];
  {buf}[off + min(row + 2u, last) * p.dv + d4] = b[2];
  {buf}[off + min(row + 3u, last) * p.dv + d4] = b[3];
}}
"""

ROWVEC = """// ldl and ldd return lse and delta of rows i..i+3 (clamped to the last).
fn ldl(base: u32, i: u32) -> vec4<f32> {
  let last = p.lq - 1u;
  return vec4<f32>(lse[base + min(i, last)], lse[base + min(i + 1u, last)], lse[base + min(i + 2u, last)], lse[base + min(i + 3u, last)]);
}
fn ldd(base: u32, i: u32) -> vec4<f32> {
  let last = p.lq - 1u;
  return vec4<f32>(delta[base + min(i, last)], delta[base + min(i + 1u, last)], delta[base + min(i + 2u, last)], delta[base + min(i + 3u, last)]);
}
"""

def block_fn(name, na, nb, lda, ldb, aoff, boff, a0, b0, comment):
    """Blk c[nb*ia + ib] += transpose(ldb(b0 + 4ib)) * lda(a0 + 4ia) over d4."""
    s = [f"// {comment}\n"]
    s.append(f"fn {name}(qoff: u32, koff: u32, {a0}: u32, {b0}: u32) -> Blk {{\n  var t: Blk;\n")
    s.append("  for (var d4 = 0u; d4 < p.dv; d4++) {\n")
    for ia in range(na):
        s.append(f"    let a{ia} = {lda}({aoff}, {a0} + {4*ia}u, d4);\n")
    for ib in range(nb):
        s.append(f"    let b{ib} = transpose({ldb}({boff}, {b0} + {4*ib}u, d4));\n")
    for ia in range(na):
        for ib in range(nb):
            s.append(f"    t.c[{nb*ia+ib}] += b{ib} * a{ia};\n")
    s.append("  }\n  return t;\n}\n")
    return "".join(s)

import os
FUSE = os.environ.get("FUSE") == "1"

def fused_fn(na, nb, la1, lb1, la2, lb2, aoff, boff, a0, b0):
    """Blk2: s = as block_fn(la1, lb1), d = block_fn(la2, lb2), in one loop."""
    s = [f"// Both blocks in one pass over the head dim.\n"]
    s.append(f"fn blocks(qoff: u32, koff: u32, {a0}: u32, {b0}: u32) -> Blk2 {{\n  var t: Blk2;\n")
    s.append("  for (var d4 = 0u; d4 < p.dv; d4++) {\n")
    for (la, lb, f) in ((la1, lb1, "s"), (la2, lb2, "d")):
        for ia in range(na):
            s.append(f"    let {f}a{ia} = {la}({aoff}, {a0} + {4*ia}u, d4);\n")
        for ib in range(nb):
            s.append(f"    let {f}b{ib} = transpose({lb}({boff}, {b0} + {4*ib}u, d4));\n")
        for ia in range(na):
            for ib in range(nb):
                s.append(f"    t.{f}[{nb*ia+ib}] += {f}b{ib} * {f}a{ia};\n")
    s.append("  }\n  return t;\n}\n")
    return "".join(s)

def gen_dq():
    R, K = 4*NR, 4*NK
    s = []
    s.append(f"""// attention_bwd_dq_direct: query gradient of attention for CPU adapters
// (lavapipe), register-blocked like attention_fwd_direct.wgsl. Same results
// as attention_bwd_dq.wgsl: per (batch, head) slice, with
// S = q[i].k[j] (masked: j >= lk, or j > i when causal),
// P = exp(scale * S - lse[i]) (lse saved by the forward),
// dP = dO[i].v[j] and delta[i] = dO[i].O[i] (attention_bwd_delta.wgsl):
//   dq[i] = scale * sum_j P (dP - delta[i]) k[j].
//
// On llvmpipe every load or store whose address is not a compile-time
// constant is a loop over the SIMD lanes while arithmetic is cheap, so what
// counts is FMAs per vec4 memory access. Each invocation owns {R}
// consecutive query rows and walks the keys in blocks of {K}, keeping a
// {R}x{K} block in {NR*NK} mat4x4 accumulators (constant indices only):
//   1. S = Q K^T and dP = dO V^T for the block (per vec4 of the head dim:
//      32 q + 32 k and 32 dO + 32 v loads for 2 x 4096 FMAs);
//   2. scale * dS = scale * P * (dP - delta), element by element (no row
//      reduction: the forward's lse makes P exact block by block), zero
//      where masked;
//   3. dq += scale dS K, kept in dq itself (per vec4 of the head dim: 32 k
//      loads, 32 dq loads and 32 dq stores for 4096 FMAs; the first block
//      reads zeros).
// 224 vec4 accesses per 12288 FMAs (the forward: 160 per 8192). Blocks of
// 16 rows x 32 keys and 32 rows x 16 keys were measured ~15% slower, one
// pass computing S and dP together no faster (see op_attention.go).
// The head dim is walked by a runtime loop (one pipeline for every head
// dim); it must be a multiple of 4 (dv = D / 4 vec4s). Rows past lq are
// clamped and act as row lq - 1 (the invocation owning them owns row
// lq - 1 and computes the same values, so the stores agree; all of a d4
// step's loads come before its stores); keys past lk are clamped on load
// and masked.
// Bindings: 0 params {{lq, lk, scale, causal, h0, dv, nh (slices in this
//   dispatch)}}; 1 q [BH, Lq, D]; 2 k [BH, Lk, D]; 3 v [BH, Lk, D];
//   4 g (dO) [BH, Lq, D]; 5 lse [all BH, Lq]; 6 delta [all BH, Lq];
//   7 dq [BH, Lq, D] (read_write). q, k, v, g, dq are read as vec4 and
//   bound from slice h0 on, lse and delta whole.
// Dispatch: Grid1D(nh * ceil(Lq / {R}), WG), WG = 8 (one SIMD group on
// llvmpipe); invocations take (slice, row block) pairs in one linear order.
""")
    s.append(COMMON)
    s.append("@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;\n\n")
    s.append(loader("ldq", "q", "lq") + loader("ldg", "g", "lq") + loader("ldk", "k", "lk") + loader("ldv", "v", "lk"))
    s.append(rmw("dq", "lq"))
    s.append(ROWVEC)
    s.append(f"\nstruct Blk {{ c: array<mat4x4<f32>, {NR*NK}> }}\n\n")
    if FUSE:
        s.append(f"struct Blk2 {{ s: array<mat4x4<f32>, {NR*NK}>, d: array<mat4x4<f32>, {NR*NK}> }}\n")
        s.append(fused_fn(NR, NK, "ldq", "ldk", "ldg", "ldv", "qoff", "koff", "i0", "k0"))
    else:
        s.append(block_fn("scores", NR, NK, "ldq", "ldk", "qoff", "koff", "i0", "k0", "S = Q K^T: c[NK*rg + kg] column r = S[i0 + 4rg + r][k0 + 4kg ..]"))
        s.append(block_fn("dprobs", NR, NK, "ldg", "ldv", "qoff", "koff", "i0", "k0", "dP = dO V^T, laid out as scores"))
    s.append("""
// dsm returns scale * dS for four rows (column r: row i + r) and keys
// key..key+3 from their raw scores s and dP, the rows' lse l and delta d;
// zero where masked.
fn dsm(s: mat4x4<f32>, dp: mat4x4<f32>, key: u32, i: u32, l: vec4<f32>, d: vec4<f32>) -> mat4x4<f32> {
  let keys = vec4<u32>(key) + vec4<u32>(0u, 1u, 2u, 3u);
  let inr = keys < vec4<u32>(p.lk);
  let c = p.causal != 0u;
  let last = p.lq - 1u; // rows past lq act as row lq - 1 (see st_dq)
  let m0 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i, last)));
  let m1 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 1u, last)));
  let m2 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 2u, last)));
  let m3 = inr & (vec4<bool>(!c) | keys <= vec4<u32>(min(i + 3u, last)));
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select(z, exp(s[0] * p.scale - l.x) * (dp[0] - d.x) * p.scale, m0),
                     select(z, exp(s[1] * p.scale - l.y) * (dp[1] - d.y) * p.scale, m1),
                     select(z, exp(s[2] * p.scale - l.z) * (dp[2] - d.z) * p.scale, m2),
                     select(z, exp(s[3] * p.scale - l.w) * (dp[3] - d.w) * p.scale, m3));
}

const WG: u32 = 8u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
""")
    s.append(f"  let nb = (p.lq + {R-1}u) / {R}u;\n")
    s.append(f"""  let bh = t / nb;
  if (bh >= p.nh) {{ return; }}
  let i0 = (t % nb) * {R}u;
  let qoff = bh * p.lq * p.dv;
  let koff = bh * p.lk * p.dv;
  var kend = p.lk;
  if (p.causal != 0u) {{ kend = min(p.lk, i0 + {R}u); }}
  let lb = (p.h0 + bh) * p.lq;
""")
    for rg in range(NR):
        s.append(f"  let l{rg} = ldl(lb, i0 + {4*rg}u);\n  let e{rg} = ldd(lb, i0 + {4*rg}u);\n")
    s.append(f"  for (var k0 = 0u; k0 < kend; k0 += {K}u) {{\n")
    if FUSE:
        s.append("    let bl = blocks(qoff, koff, i0, k0);\n")
    else:
        s.append("    let s = scores(qoff, koff, i0, k0);\n    let dp = dprobs(qoff, koff, i0, k0);\n")
    for rg in range(NR):
        for kg in range(NK):
            c = NK*rg+kg
            a, b = (f"bl.s[{c}]", f"bl.d[{c}]") if FUSE else (f"s.c[{c}]", f"dp.c[{c}]")
            s.append(f"    let ds{rg}_{kg} = dsm({a}, {b}, k0 + {4*kg}u, i0 + {4*rg}u, l{rg}, e{rg});\n")
    s.append("    let first = k0 == 0u;\n    for (var d4 = 0u; d4 < p.dv; d4++) {\n")
    for kg in range(NK):
        s.append(f"      let kb{kg} = ldk(koff, k0 + {4*kg}u, d4);\n")
    for rg in range(NR):
        terms = " + ".join(f"kb{kg} * ds{rg}_{kg}" for kg in range(NK))
        s.append(f"      let o{rg} = {terms} + ld_dq(qoff, i0 + {4*rg}u, d4, first);\n")
    for rg in range(NR):
        s.append(f"      st_dq(qoff, i0 + {4*rg}u, d4, o{rg});\n")
    s.append("    }\n  }\n}\n")
    return "".join(s)

def gen_dkdv():
    R, Q = 4*KK, 4*NQ
    s = []
    s.append(f"""// attention_bwd_dkdv_direct: key and value gradients of attention for CPU
// adapters (lavapipe), register-blocked like attention_fwd_direct.wgsl.
// Same results as attention_bwd_dkdv.wgsl: with P, dP, delta as in
// attention_bwd_dq_direct.wgsl (masked: i >= lq, or j > i when causal),
//   dv[j] = sum_i P dO[i],   dk[j] = scale * sum_i P (dP - delta[i]) q[i].
//
// Each invocation owns {R} consecutive key rows and walks the queries in
// blocks of {Q} (from the block holding query j0 on when causal: earlier
// queries see none of its keys), keeping the transposed {R}x{Q} blocks in
// {KK*NQ} mat4x4 accumulators (constant indices only):
//   1. S^T = K Q^T and dP^T = V dO^T (per vec4 of the head dim: 32 k + 32 q
//      and 32 v + 32 dO loads for 2 x 4096 FMAs);
//   2. P^T = exp(scale * S^T - lse) and scale * dS^T, element by element,
//      zero where masked (lse and delta of the block's queries: 64 scalar
//      loads per block);
//   3. dv += P^T dO and dk += scale dS^T Q, kept in dk and dv themselves
//      (per vec4 of the head dim: 32 dO and 32 q loads, 64 loads and 64
//      stores of dk and dv for 8192 FMAs; the first block reads zeros).
// 320 vec4 accesses per 16384 FMAs. At least one query block always runs,
// so dk and dv are written (zeros for keys no query sees).
// Keys past lk are clamped and act as key lk - 1 (their invocation owns key
// lk - 1 and computes the same values; all of a d4 step's loads of a buffer
// come before its stores); queries past lq are clamped on load and masked.
// Bindings: 0 params {{lq, lk, scale, causal, h0, dv, nh}}; 1 q [BH, Lq, D];
//   2 k [BH, Lk, D]; 3 v [BH, Lk, D]; 4 g (dO) [BH, Lq, D];
//   5 lse [all BH, Lq]; 6 delta [all BH, Lq]; 7 dk [BH, Lk, D]
//   (read_write); 8 dv [BH, Lk, D] (read_write). All but lse and delta are
//   read as vec4 and bound from slice h0 on.
// Dispatch: Grid1D(nh * ceil(Lk / {R}), WG), WG = 8.
""")
    s.append(COMMON)
    s.append("@group(0) @binding(7) var<storage, read_write> dk: array<vec4<f32>>;\n")
    s.append("@group(0) @binding(8) var<storage, read_write> dv: array<vec4<f32>>;\n\n")
    s.append(loader("ldq", "q", "lq") + loader("ldg", "g", "lq") + loader("ldk", "k", "lk") + loader("ldv", "v", "lk"))
    s.append(rmw("dk", "lk") + rmw("dv", "lk"))
    s.append(ROWVEC)
    s.append(f"\nstruct Blk {{ c: array<mat4x4<f32>, {KK*NQ}> }}\n\n")
    if FUSE:
        s.append(f"struct Blk2 {{ s: array<mat4x4<f32>, {KK*NQ}>, d: array<mat4x4<f32>, {KK*NQ}> }}\n")
        s.append(fused_fn(KK, NQ, "ldk", "ldq", "ldv", "ldg", "koff", "qoff", "j0", "i0"))
    else:
        s.append(block_fn("scores", KK, NQ, "ldk", "ldq", "koff", "qoff", "j0", "i0", "S^T = K Q^T: c[NQ*kg + qg] column r = S[i0 + 4qg ..][j0 + 4kg + r]"))
        s.append(block_fn("dprobs", KK, NQ, "ldv", "ldg", "koff", "qoff", "j0", "i0", "dP^T = V dO^T, laid out as scores"))
    s.append("""
// Probs is P^T and scale * dS^T for four keys (column r: key j + r) and four
// queries (components: i..i+3), zero where masked.
struct Probs { p: mat4x4<f32>, ds: mat4x4<f32> }

fn probs(s: mat4x4<f32>, dp: mat4x4<f32>, j: u32, i: u32, l: vec4<f32>, d: vec4<f32>) -> Probs {
  let qs = vec4<u32>(i) + vec4<u32>(0u, 1u, 2u, 3u);
  let inr = qs < vec4<u32>(p.lq);
  let c = p.causal != 0u;
  let last = p.lk - 1u; // keys past lk act as key lk - 1 (see st_dk)
  let m0 = inr & (vec4<bool>(!c) | vec4<u32>(min(j, last)) <= qs);
  let m1 = inr & (vec4<bool>(!c) | vec4<u32>(min(j + 1u, last)) <= qs);
  let m2 = inr & (vec4<bool>(!c) | vec4<u32>(min(j + 2u, last)) <= qs);
  let m3 = inr & (vec4<bool>(!c) | vec4<u32>(min(j + 3u, last)) <= qs);
  let z = vec4<f32>(0.0);
  var r: Probs;
  r.p = mat4x4<f32>(select(z, exp(s[0] * p.scale - l), m0), select(z, exp(s[1] * p.scale - l), m1),
                    select(z, exp(s[2] * p.scale - l), m2), select(z, exp(s[3] * p.scale - l), m3));
  let f = p.scale;
  r.ds = mat4x4<f32>(r.p[0] * (dp[0] - d) * f, r.p[1] * (dp[1] - d) * f, r.p[2] * (dp[2] - d) * f, r.p[3] * (dp[3] - d) * f);
  return r;
}

const WG: u32 = 8u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let t = (wid.x + wid.y * nwg.x) * WG + lid;
""")
    s.append(f"  let nb = (p.lk + {R-1}u) / {R}u;\n")
    s.append(f"""  let bh = t / nb;
  if (bh >= p.nh) {{ return; }}
  let j0 = (t % nb) * {R}u;
  let qoff = bh * p.lq * p.dv;
  let koff = bh * p.lk * p.dv;
  let lb = (p.h0 + bh) * p.lq;
  // Causal: queries before j0 see none of these keys. At least one block
  // runs (it zeroes dk and dv; when j0 >= lq it is wholly masked).
  var istart = 0u;
  if (p.causal != 0u) {{ istart = min(j0, p.lq - 1u) / {Q}u * {Q}u; }}
  for (var i0 = istart; i0 < p.lq; i0 += {Q}u) {{
""")
    for qg in range(NQ):
        s.append(f"    let l{qg} = ldl(lb, i0 + {4*qg}u);\n    let e{qg} = ldd(lb, i0 + {4*qg}u);\n")
    if FUSE:
        s.append("    let bl = blocks(qoff, koff, j0, i0);\n")
    else:
        s.append("    let s = scores(qoff, koff, j0, i0);\n    let dp = dprobs(qoff, koff, j0, i0);\n")
    for kg in range(KK):
        for qg in range(NQ):
            c = NQ*kg+qg
            a, b = (f"bl.s[{c}]", f"bl.d[{c}]") if FUSE else (f"s.c[{c}]", f"dp.c[{c}]")
            s.append(f"    let p{kg}_{qg} = probs({a}, {b}, j0 + {4*kg}u, i0 + {4*qg}u, l{qg}, e{qg});\n")
    s.append("    let first = i0 == istart;\n    for (var d4 = 0u; d4 < p.dv; d4++) {\n")
    for qg in range(NQ):
        s.append(f"      let gb{qg} = ldg(qoff, i0 + {4*qg}u, d4);\n")
    for kg in range(KK):
        terms = " + ".join(f"gb{qg} * p{kg}_{qg}.p" for qg in range(NQ))
        s.append(f"      let ov{kg} = {terms} + ld_dv(koff, j0 + {4*kg}u, d4, first);\n")
    for kg in range(KK):
        s.append(f"      st_dv(koff, j0 + {4*kg}u, d4, ov{kg});\n")
    for qg in range(NQ):
        s.append(f"      let qb{qg} = ldq(qoff, i0 + {4*qg}u, d4);\n")
    for kg in range(KK):
        terms = " + ".join(f"qb{qg} * p{kg}_{qg}.ds" for qg in range(NQ))
        s.append(f"      let ok{kg} = {terms} + ld_dk(koff, j0 + {4*kg}u, d4, first);\n")
    for kg in range(KK):
        s.append(f"      st_dk(koff, j0 + {4*kg}u, d4, ok{kg});\n")
    s.append("    }\n  }\n}\n")
    return "".join(s)

suf = sys.argv[6] if len(sys.argv) > 6 else ""
open(f"{out}/attention_bwd_dq_direct{suf}.wgsl", "w").write(gen_dq())
open(f"{out}/attention_bwd_dkdv_direct{suf}.wgsl", "w").write(gen_dkdv())
