// The row layout of the row-wise kernels (softmax.wgsl, cross_entropy.wgsl, quantize.wgsl) and its workgroup
// reductions: a workgroup of WORKGROUP = 64 invocations of which LANES (1, 8 or 64; rowLanes in
// programs/softmax.ts) share a row. No kernel on its own: included with
// `#include "lib/row_reduce.wgsl"`.
//
// Declares: WORKGROUP, the override constant LANES, LOWEST, the ops REDUCE_SUM, REDUCE_MAX_SUM and
// REDUCE_MAX, the workgroup arrays reduce_lanes [WORKGROUP] and reduce_parts [8] (vec2<f32>), and
// reduce_sum and reduce_max_sum, which combine a value over the LANES invocations of a row and
// give every one of them the result; reduce_row takes any op of reduce_combine (REDUCE_MAX: the
// largest of each component, for a block's absmax beside a flag).
// The includer provides: entry points with @workgroup_size(WORKGROUP) that pass their
// local_invocation_index as `lid`, and call one reduction at most, once, from uniform control flow
// (the workgroup arrays are not reused: there is no barrier before the first write).
// Order: fan-in 8 per level in a fixed order (8 lanes: one level; 64 lanes: two), so the rounding
// depends only on LANES.

const WORKGROUP = 64u;
override LANES: u32 = 64u;

// The lowest finite f32: a running max that has seen nothing yet (keeps exp() away from inf − inf).
const LOWEST = -0x1.fffffep+127f;

const REDUCE_SUM = 0u;
// Pairs (m, s) = (max, Σ exp(x − m)) of disjoint sets of elements, as in an online softmax.
const REDUCE_MAX_SUM = 1u;
const REDUCE_MAX = 2u;

var<workgroup> reduce_lanes: array<vec2<f32>, WORKGROUP>;
var<workgroup> reduce_parts: array<vec2<f32>, 8>;

// a ⊕ b under `op`; the scalar ops carry their value in .x (and 0 in .y).
fn reduce_combine(a: vec2<f32>, b: vec2<f32>, op: u32) -> vec2<f32> {
  if (op == REDUCE_SUM) { return a + b; }
  if (op == REDUCE_MAX) { return max(a, b); }
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

fn reduce_row(v: vec2<f32>, op: u32, lid: u32) -> vec2<f32> {
  if (LANES == 1u) { return v; }
  reduce_lanes[lid] = v;
  workgroupBarrier();
  if (LANES == 8u) {
    let first = lid & ~7u;
    var acc = reduce_lanes[first];
    for (var i = first + 1u; i < first + 8u; i++) { acc = reduce_combine(acc, reduce_lanes[i], op); }
    return acc;
  }
  if (lid < 8u) {
    var acc = reduce_lanes[lid];
    for (var i = lid + 8u; i < WORKGROUP; i += 8u) { acc = reduce_combine(acc, reduce_lanes[i], op); }
    reduce_parts[lid] = acc;
  }
  workgroupBarrier();
  var acc = reduce_parts[0];
  for (var i = 1u; i < 8u; i++) { acc = reduce_combine(acc, reduce_parts[i], op); }
  return acc;
}

fn reduce_sum(v: f32, lid: u32) -> f32 {
  return reduce_row(vec2<f32>(v, 0.0), REDUCE_SUM, lid).x;
}

fn reduce_max_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
  return reduce_row(v, REDUCE_MAX_SUM, lid);
}
