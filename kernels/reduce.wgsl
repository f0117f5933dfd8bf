// Reductions of x viewed as [outer, length, inner] over the middle axis.
//
// Bindings: 0 params, 1 x (read), 2 out (write); dense f32.
// OP (override): 0 sum, 1 max (NaN propagates). A mean is a sum with `divisor` = length.
// The reduced axis is cut into `chunks` pieces of `chunk` elements (the last one shorter), each
// reduced on its own: out is [outer, chunks, inner], and the program reduces it again while
// chunks > 1. That bounds every invocation's loop (Mesa's llvmpipe silently stops a shader's loops
// after 65,535 iterations) and spreads a long axis over many workgroups.
// `identity` is the accumulator's start (0, or −Infinity for max) and `empty` what a reduction of
// length 0 yields (0 for sum, NaN for mean, −Infinity for max); both come from the host because
// WGSL constant expressions cannot be infinite or NaN.
//
// Two entry points, both with linear workgroup indexing (wid.x + wid.y · nwg.x, folded past 65,535):
// - rows (inner == 1): one workgroup of 64 per (row, chunk). Invocation lid accumulates elements
//   lid, lid + 64, … of the piece (vec4s of it with VEC4, when length and chunk are multiples of 4
//   so every piece starts on a vec4), then a tree in workgroup memory combines the 64 partials.
//   outer · chunks workgroups.
// - columns (any inner, including 1 for short rows): one invocation per output (o, chunk, i),
//   looping over the piece; neighbouring invocations read neighbouring i, so for inner > 1 every
//   step of the loop reads a contiguous run. With VEC4 (inner % 4 == 0) an invocation takes four
//   neighbouring outputs as one vec4. ceil(outer · chunks · inner / 256) workgroups of 256
//   (a quarter of the invocations with VEC4).

const WORKGROUP = 256u;
const ROW_WORKGROUP = 64u;
// Each invocation sums its elements in blocks of BLOCK before adding a block to its total, which
// keeps the f32 rounding of long loops near that of a pairwise sum.
const BLOCK = 64u;

override OP: u32;

struct Params {
  outer: u32,
  length: u32,
  inner: u32,
  chunk: u32,
  chunks: u32,
  identity: f32,
  empty: f32,
  divisor: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partials: array<f32, ROW_WORKGROUP>;

fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

/** Combines two partial results; for max a NaN in either wins (a + b is then NaN). */
fn combine(a: f32, b: f32) -> f32 {
  if (OP == 1u) { return select(max(a, b), a + b, is_nan(a) || is_nan(b)); }
  return a + b;
}

fn combine4(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(combine(a.x, b.x), combine(a.y, b.y), combine(a.z, b.z), combine(a.w, b.w));
}

fn finish(acc: f32) -> f32 {
  if (params.length == 0u) { return params.empty; }
  return acc / params.divisor;
}

@compute @workgroup_size(ROW_WORKGROUP)
fn rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let piece = wid.x + wid.y * nwg.x;
  // Every invocation of a workgroup takes the same branch: the barriers below stay uniform.
  if (piece >= params.outer * params.chunks) { return; }
  let row = piece / params.chunks;
  let first = (piece - row * params.chunks) * params.chunk;
  let count = min(params.chunk, params.length - first);
#if VEC4
  let start = (row * params.length + first) / 4u;
  let units = count / 4u;
#else
  let start = row * params.length + first;
  let units = count;
#endif
  var acc = params.identity;
  var l = lid;
  while (l < units) {
    let block_end = min(l + BLOCK * ROW_WORKGROUP, units);
    var block = params.identity;
    for (; l < block_end; l += ROW_WORKGROUP) {
#if VEC4
      let v = x[start + l];
      block = combine(block, combine(combine(v.x, v.y), combine(v.z, v.w)));
#else
      block = combine(block, x[start + l]);
#endif
    }
    acc = combine(acc, block);
  }
  partials[lid] = acc;
  workgroupBarrier();
  for (var half = ROW_WORKGROUP / 2u; half > 0u; half >>= 1u) {
    if (lid < half) { partials[lid] = combine(partials[lid], partials[lid + half]); }
    workgroupBarrier();
  }
  if (lid == 0u) { out[piece] = finish(partials[0]); }
}

@compute @workgroup_size(WORKGROUP)
fn columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
#if VEC4
  let inner = params.inner / 4u;
#else
  let inner = params.inner;
#endif
  let index = (wid.x + wid.y * nwg.x) * WORKGROUP + lid;
  let per_outer = params.chunks * inner;
  if (index >= params.outer * per_outer) { return; }
  let o = index / per_outer;
  let c = (index - o * per_outer) / inner;
  let i = index - o * per_outer - c * inner;
  let first = c * params.chunk;
  let end = first + min(params.chunk, params.length - first);
  var position = (o * params.length + first) * inner + i;
#if VEC4
  var acc = vec4<f32>(params.identity);
  var l = first;
  while (l < end) {
    let block_end = min(l + BLOCK, end);
    var block = vec4<f32>(params.identity);
    for (; l < block_end; l++) {
      block = combine4(block, x[position]);
      position += inner;
    }
    acc = combine4(acc, block);
  }
  let out_first = index * 4u;
  out[out_first] = finish(acc.x);
  out[out_first + 1u] = finish(acc.y);
  out[out_first + 2u] = finish(acc.z);
  out[out_first + 3u] = finish(acc.w);
#else
  var acc = params.identity;
  var l = first;
  while (l < end) {
    let block_end = min(l + BLOCK, end);
    var block = params.identity;
    for (; l < block_end; l++) {
      block = combine(block, x[position]);
      position += inner;
    }
    acc = combine(acc, block);
  }
  out[index] = finish(acc);
#endif
}
